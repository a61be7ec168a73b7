import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { OrderSchema, OrderService, OrderStatus, type Order as OrderMsg } from "../../gen/orders/v1/orders_pb.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import { IdempotencyKeyField, OrderId, PlaceOrderInput } from "./commands/inputs.ts";
import { placeOrder, type PlaceOrderDeps } from "./commands/place-order.ts";
import type { Order, OrderStatus as Status } from "./domain/order.ts";
import { getOrder } from "./queries/get-order.ts";

const STATUS: Record<Status, OrderStatus> = {
  PENDING: OrderStatus.PENDING,
  CONFIRMED: OrderStatus.CONFIRMED,
  CANCELLED: OrderStatus.CANCELLED,
};

/** Domain order -> proto. */
export function toProto(o: Order): OrderMsg {
  return create(OrderSchema, {
    id: o.id,
    customerId: o.customerId,
    status: STATUS[o.status],
    totalCents: BigInt(o.totalCents),
    lines: o.lines.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPriceCents: BigInt(l.unitPriceCents), lineTotalCents: BigInt(l.lineTotalCents) })),
    reason: o.reason,
    createdAt: timestampFromMs(o.createdAt),
  });
}

/** The Connect implementation of orders.v1.OrderService: proto in, command/query, proto out. */
export function ordersRpc(deps: PlaceOrderDeps): ServiceImpl<typeof OrderService> {
  return {
    async placeOrder(req) {
      // proto3 has no "absent": an empty key means the caller wants no idempotency.
      const { idempotencyKey } = parseOrThrow(IdempotencyKeyField, { idempotencyKey: req.idempotencyKey || undefined });
      const input = parseOrThrow(PlaceOrderInput, { customerId: req.customerId, lines: req.lines.map((l) => ({ productId: l.productId, quantity: l.quantity })) });
      const { order, replayed } = await placeOrder(deps, input, idempotencyKey);
      return { order: toProto(order), replayed };
    },
    async getOrder(req) {
      return { order: toProto(await getOrder(deps.storage, parseOrThrow(OrderId, req.id))) };
    },
  };
}
