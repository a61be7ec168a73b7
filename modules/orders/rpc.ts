import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { OrderSchema, OrderService, OrderStatus, SagaState as SagaStateMsg, type Order as OrderMsg } from "../../gen/orders/v1/orders_pb.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import { IdempotencyKeyField, OrderId, PlaceOrderInput, ResumeSagaInput } from "./commands/inputs.ts";
import { resumeSaga } from "./commands/advance-saga.ts";
import { placeOrder, type PlaceOrderDeps } from "./commands/place-order.ts";
import type { Order, OrderStatus as Status } from "./domain/order.ts";
import type { SagaState } from "./domain/saga.ts";
import { getOrder, getSagaSummary, type SagaView } from "./queries/get-order.ts";

const STATUS: Record<Status, OrderStatus> = {
  PENDING: OrderStatus.PENDING,
  CONFIRMED: OrderStatus.CONFIRMED,
  CANCELLED: OrderStatus.CANCELLED,
};

const SAGA_STATE: Record<SagaState, SagaStateMsg> = {
  AWAITING_PAYMENT: SagaStateMsg.AWAITING_PAYMENT,
  AWAITING_STOCK: SagaStateMsg.AWAITING_STOCK,
  COMPENSATING: SagaStateMsg.COMPENSATING,
  CONFIRMED: SagaStateMsg.CONFIRMED,
  CANCELLED: SagaStateMsg.CANCELLED,
  STUCK: SagaStateMsg.STUCK,
};

/** A saga past its deadline by more than this is overdue for the invariant checker: the sweeper runs every few hundred ms. */
const OVERDUE_GRACE_MS = 5_000;

/** Domain order (with its saga, when read) -> proto. */
export function toProto(o: Order & { saga?: SagaView }): OrderMsg {
  return create(OrderSchema, {
    id: o.id,
    customerId: o.customerId,
    status: STATUS[o.status],
    totalCents: BigInt(o.totalCents),
    lines: o.lines.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPriceCents: BigInt(l.unitPriceCents), lineTotalCents: BigInt(l.lineTotalCents) })),
    reason: o.reason,
    createdAt: timestampFromMs(o.createdAt),
    ...(o.saga && {
      saga: {
        state: SAGA_STATE[o.saga.state],
        ...(o.saga.deadlineAt !== undefined && { deadline: timestampFromMs(o.saga.deadlineAt) }),
        compensationAttempts: o.saga.attempts,
        reason: o.saga.reason,
        history: o.saga.history.map((h) => ({ at: timestampFromMs(h.at), state: SAGA_STATE[h.state], note: h.note })),
      },
    }),
  });
}

/** The Connect implementation of orders.v1.OrderService: proto in, command/query, proto out. */
export function ordersRpc(deps: PlaceOrderDeps): ServiceImpl<typeof OrderService> {
  const sagaDeps = { storage: deps.storage, timings: deps.timings, orders: deps.orders };
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
    async resumeSaga(req) {
      const { orderId } = parseOrThrow(ResumeSagaInput, { orderId: req.orderId });
      await resumeSaga(sagaDeps, orderId);
      return { order: toProto(await getOrder(deps.storage, orderId)) };
    },
    async getSagaSummary() {
      const s = await getSagaSummary(deps.storage, Date.now(), OVERDUE_GRACE_MS);
      return {
        states: [...s.states].map(([state, count]) => ({ state: SAGA_STATE[state], count: BigInt(count) })),
        confirmedTotalCents: BigInt(s.confirmedTotalCents),
        overdue: BigInt(s.overdue.count),
        overdueOrderIds: s.overdue.orderIds,
      };
    },
  };
}
