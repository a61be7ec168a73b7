import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
  OrderCreatedSchema,
  PaymentRefundRequestedSchema,
  StockReleaseRequestedSchema,
  StockReservationRequestedSchema,
} from "../../../gen/orders/v1/events_pb.ts";
import type { Tx } from "../../../platform/module.ts";
import type { Order } from "../domain/order.ts";
import type { SagaCommand } from "../domain/saga.ts";

/** Writes OrderCreated to the outbox, in the caller's transaction. Aggregate: the order id. */
export function orderCreated(tx: Tx, o: Order): void {
  tx.publish(OrderCreatedSchema, o.id, {
    orderId: o.id,
    customerId: o.customerId,
    lines: o.lines.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPriceCents: BigInt(l.unitPriceCents), lineTotalCents: BigInt(l.lineTotalCents) })),
    totalCents: BigInt(o.totalCents),
    createdAt: timestampFromMs(o.createdAt),
  });
}

/** Writes what a saga transition must send or announce, in the transition's transaction. */
export function sagaCommands(tx: Tx, order: Pick<Order, "id" | "customerId" | "totalCents" | "lines">, commands: readonly SagaCommand[]): void {
  for (const c of commands) {
    switch (c.kind) {
      case "reserve-stock":
        tx.publish(StockReservationRequestedSchema, order.id, { orderId: order.id, lines: order.lines.map((l) => ({ productId: l.productId, quantity: l.quantity })) });
        break;
      case "refund":
        tx.publish(PaymentRefundRequestedSchema, order.id, { orderId: order.id, customerId: order.customerId, attempt: c.attempt });
        break;
      case "release":
        tx.publish(StockReleaseRequestedSchema, order.id, { orderId: order.id, attempt: c.attempt });
        break;
      case "confirmed":
        tx.publish(OrderConfirmedSchema, order.id, { orderId: order.id, customerId: order.customerId, totalCents: BigInt(order.totalCents) });
        break;
      case "cancelled":
        tx.publish(OrderCancelledSchema, order.id, { orderId: order.id, customerId: order.customerId, reason: c.reason });
        break;
    }
  }
}
