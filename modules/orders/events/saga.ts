import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { InventoryReleasedSchema, InventoryReservationFailedSchema, InventoryReservedSchema } from "../../../gen/inventory/v1/events_pb.ts";
import { PaymentFailedSchema, PaymentProcessedSchema, PaymentRefundedSchema } from "../../../gen/payments/v1/events_pb.ts";
import { on, type SubscriptionSpec } from "../../../platform/module.ts";
import { applyTransition, loadSaga, type SagaDeps } from "../commands/advance-saga.ts";
import { decide, type SagaInput } from "../domain/saga.ts";

/**
 * The orchestrator's ears: the answers of payments and inventory move each order's saga. Each
 * handler loads the saga (outside the transaction), decides, and writes the transition with the
 * commands it sends; a concurrent transition (another answer, the timeout sweeper) makes the
 * platform load and decide again. An answer that no longer matters (a duplicate, a late reply to a
 * step already left) changes nothing but the inbox.
 */
export function sagaSubscription(deps: SagaDeps): SubscriptionSpec {
  // Every answer names its order (the aggregate of the conversation).
  const orderIdOf = (e: unknown) => (e as { orderId: string }).orderId;
  const step = <D extends DescMessage>(schema: D, input: (e: MessageShape<D>) => SagaInput) =>
    on(schema, {
      load: (e) => loadSaga(deps, orderIdOf(e)),
      handle: (e, _meta, tx, loaded) => {
        const orderId = orderIdOf(e);
        // Payments and inventory answer only orders placed here: an unknown one is a poison message.
        if (!loaded) throw new Error(`no saga for order "${orderId}"`);
        const now = Date.now();
        const tr = decide(loaded.saga, input(e), now, deps.timings);
        if (tr) applyTransition(tx, loaded, tr, now);
      },
    });
  return {
    name: "saga",
    handlers: [
      step(PaymentProcessedSchema, () => ({ kind: "payment-processed" })),
      step(PaymentFailedSchema, (e) => ({ kind: "payment-failed", reason: e.reason || "payment-failed" })),
      step(PaymentRefundedSchema, () => ({ kind: "refunded" })),
      step(InventoryReservedSchema, () => ({ kind: "stock-reserved" })),
      step(InventoryReservationFailedSchema, (e) => ({ kind: "stock-failed", reason: e.reason || "out-of-stock" })),
      step(InventoryReleasedSchema, () => ({ kind: "released" })),
    ],
  };
}
