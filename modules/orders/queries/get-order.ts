import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import type { Order } from "../domain/order.ts";
import type { Saga, SagaState } from "../domain/saga.ts";
import { sagaStore } from "../db/saga-store.ts";
import { orderStore } from "../db/store.ts";

/** An order's saga with its history, as the API shows it. */
export interface SagaView extends Saga {
  readonly history: ReadonlyArray<{ at: number; state: SagaState; note: string }>;
}

/** One order with its lines and its saga, or NotFound (`order-not-found`). */
export async function getOrder(storage: ModuleStorage, id: string): Promise<Order & { saga?: SagaView }> {
  const [o, saga, history] = await Promise.all([orderStore.byId(storage, id), sagaStore.byOrder(storage, id), sagaStore.history(storage, id)]);
  if (!o) throw domainError(Code.NotFound, "order-not-found", `order ${id} does not exist`, "orders", { orderId: id });
  return saga ? { ...o, saga: { ...saga, history } } : o;
}

/** Totals for the invariant checker: sagas per state, the confirmed total, sagas past their deadline by more than `graceMs`. */
export async function getSagaSummary(storage: ModuleStorage, now: number, graceMs: number) {
  const [states, confirmedTotalCents, overdue] = await Promise.all([sagaStore.countByState(storage), orderStore.confirmedTotal(storage), sagaStore.overdue(storage, now - graceMs, 20)]);
  return { states, confirmedTotalCents, overdue };
}
