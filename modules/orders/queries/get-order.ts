import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import type { Order } from "../domain/order.ts";
import { orderStore } from "../db/store.ts";

/** One order with its lines, or NotFound (`order-not-found`). */
export async function getOrder(storage: ModuleStorage, id: string): Promise<Order> {
  const o = await orderStore.byId(storage, id);
  if (!o) throw domainError(Code.NotFound, "order-not-found", `order ${id} does not exist`, "orders", { orderId: id });
  return o;
}
