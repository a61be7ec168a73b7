import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { OrderCreatedSchema } from "../../../gen/orders/v1/events_pb.ts";
import type { Tx } from "../../../platform/module.ts";
import type { Order } from "../domain/order.ts";

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
