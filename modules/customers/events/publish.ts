import type { Tx } from "../../../platform/module.ts";
import { CustomerRegisteredSchema } from "../../../gen/customers/v1/events_pb.ts";
import type { Customer } from "../domain/customer.ts";

/** Writes CustomerRegistered to the outbox, in the caller's transaction. */
export function customerRegistered(tx: Tx, c: Customer): void {
  tx.publish(CustomerRegisteredSchema, c.id, { customerId: c.id, email: c.email, name: c.name, creditLimitCents: BigInt(c.creditLimitCents) });
}
