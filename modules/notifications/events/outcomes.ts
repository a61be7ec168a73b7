import { OrderCancelledSchema, OrderConfirmedSchema } from "../../../gen/orders/v1/events_pb.ts";
import { on, type SubscriptionSpec } from "../../../platform/module.ts";
import { orderCancelled, orderConfirmed } from "../domain/notification.ts";
import { notificationStore } from "../db/store.ts";

/**
 * The module's only input: orders' final outcomes. The inbox drops a redelivered envelope; the
 * primary key (order, kind) drops the same outcome published again under a new event id, so each
 * outcome of an order is told once. The recording time is the handler's clock, as the contract says.
 */
export const outcomes: SubscriptionSpec = {
  name: "outcomes",
  // Nobody waits on the record: batches fill for up to 20 ms, so it costs fewer transactions.
  lingerMs: 20,
  handlers: [
    on(OrderConfirmedSchema, (e, _meta, tx) =>
      notificationStore.record(tx, orderConfirmed({ orderId: e.orderId, customerId: e.customerId, totalCents: Number(e.totalCents), at: Date.now() })),
    ),
    on(OrderCancelledSchema, (e, _meta, tx) =>
      notificationStore.record(tx, orderCancelled({ orderId: e.orderId, customerId: e.customerId, reason: e.reason, at: Date.now() })),
    ),
  ],
};
