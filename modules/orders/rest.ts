import type { Hono } from "hono";
import { jsonBody, pathParam } from "../../platform/http/validate.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import { IdempotencyKeyHeader, OrderId, PlaceOrderInput } from "./commands/inputs.ts";
import { placeOrder, type PlaceOrderDeps } from "./commands/place-order.ts";
import type { Order } from "./domain/order.ts";
import { resumeSaga } from "./commands/advance-saga.ts";
import { getOrder, type SagaView } from "./queries/get-order.ts";

/** The public JSON shape of an order; `reason` only when there is one; `saga` where the placement saga is. */
function toJson(o: Order & { saga?: SagaView }) {
  return {
    id: o.id,
    customerId: o.customerId,
    status: o.status,
    totalCents: o.totalCents,
    lines: o.lines.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPriceCents: l.unitPriceCents, lineTotalCents: l.lineTotalCents })),
    ...(o.reason ? { reason: o.reason } : {}),
    createdAt: new Date(o.createdAt).toISOString(),
    ...(o.saga && {
      saga: {
        state: o.saga.state,
        ...(o.saga.deadlineAt !== undefined && { deadline: new Date(o.saga.deadlineAt).toISOString() }),
        ...(o.saga.reason && { reason: o.saga.reason }),
        compensationAttempts: o.saga.attempts,
        history: o.saga.history.map((h) => ({ at: new Date(h.at).toISOString(), state: h.state, note: h.note })),
      },
    }),
  };
}

/** `POST /api/v1/orders` (optional `Idempotency-Key` header), `GET /api/v1/orders/{id}`. */
export function ordersRoutes(deps: PlaceOrderDeps) {
  return (app: Hono) => {
    app.post("/api/v1/orders", async (c) => {
      const key = parseOrThrow(IdempotencyKeyHeader, { "Idempotency-Key": c.req.header("Idempotency-Key") })["Idempotency-Key"];
      const { order, replayed } = await placeOrder(deps, await jsonBody(c, PlaceOrderInput), key);
      // A replay answers as the first request did (202, same id); the header tells a client which it got.
      if (replayed) c.header("Idempotent-Replayed", "true");
      return c.json({ id: order.id, status: order.status }, 202);
    });
    app.get("/api/v1/orders/:id", async (c) => c.json(toJson(await getOrder(deps.storage, pathParam(c, "id", OrderId)))));
    // The operator's way out of STUCK: request the pending compensations again.
    app.post("/api/v1/orders/:id/saga/resume", async (c) => {
      const id = pathParam(c, "id", OrderId);
      await resumeSaga({ storage: deps.storage, timings: deps.timings, orders: deps.orders }, id);
      return c.json(toJson(await getOrder(deps.storage, id)));
    });
  };
}
