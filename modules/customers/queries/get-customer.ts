import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import type { Customer } from "../domain/customer.ts";
import { customerStore } from "../db/store.ts";

/** One customer, or NotFound (`customer-not-found`). */
export async function getCustomer(storage: ModuleStorage, id: string): Promise<Customer> {
  const c = await customerStore.byId(storage, id);
  if (!c) throw domainError(Code.NotFound, "customer-not-found", `customer ${id} does not exist`, "customers", { customerId: id });
  return c;
}
