import { PaymentFailedSchema, PaymentProcessedSchema, PaymentRefundedSchema } from "../../../gen/payments/v1/events_pb.ts";
import type { Tx } from "../../../platform/module.ts";
import type { Outcome } from "../domain/decide.ts";

/** Writes the event telling the saga an outcome to the outbox, in the caller's transaction. Aggregate: the order. */
export function publishOutcome(tx: Tx, o: Outcome): void {
  switch (o.type) {
    case "processed":
      tx.publish(PaymentProcessedSchema, o.orderId, { orderId: o.orderId, customerId: o.customerId, amountCents: BigInt(o.amountCents) });
      return;
    case "failed":
      tx.publish(PaymentFailedSchema, o.orderId, { orderId: o.orderId, customerId: o.customerId, reason: o.reason });
      return;
    case "refunded":
      tx.publish(PaymentRefundedSchema, o.orderId, { orderId: o.orderId, customerId: o.customerId, amountCents: BigInt(o.amountCents) });
      return;
  }
}
