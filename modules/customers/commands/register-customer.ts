import { Code } from "@connectrpc/connect";
import { newId } from "../../../platform/ids.ts";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { newCustomer, type Customer } from "../domain/customer.ts";
import { customerStore } from "../db/store.ts";
import { customerRegistered } from "../events/publish.ts";
import type { RegisterCustomerInput } from "./inputs.ts";

/**
 * Registers a customer and publishes CustomerRegistered, atomically. An email already used by
 * another customer, in any letter case, is AlreadyExists (`email-taken`).
 */
export async function registerCustomer(storage: ModuleStorage, input: RegisterCustomerInput): Promise<Customer> {
  return storage.transact((tx) => {
    // Built first so the uniqueness check sees the normalised email, the form the column holds.
    const customer = newCustomer({ id: newId(), ...input, now: Date.now() });
    if (customerStore.byEmail(tx.db, customer.email)) throw domainError(Code.AlreadyExists, "email-taken", `email ${customer.email} is already used by another customer`, "customers", { email: customer.email });
    customerStore.insert(tx.db, customer);
    customerRegistered(tx, customer);
    return customer;
  });
}
