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
 * another customer, in any letter case, is AlreadyExists (`email-taken`): the customer is built
 * first, so the unique column compares the normalised email, and the constraint decides races.
 */
export async function registerCustomer(storage: ModuleStorage, input: RegisterCustomerInput): Promise<Customer> {
  const customer = newCustomer({ id: newId(), ...input, now: Date.now() });
  return storage.transact((tx) => {
    customerStore.insert(tx, customer, {
      ifDuplicate: () => domainError(Code.AlreadyExists, "email-taken", `email ${customer.email} is already used by another customer`, "customers", { email: customer.email }),
    });
    customerRegistered(tx, customer);
    return customer;
  });
}
