import { StockReleaseRequestedSchema, StockReservationRequestedSchema, type StockReservationRequested } from "../../../gen/orders/v1/events_pb.ts";
import { on, type ModuleStorage, type SubscriptionSpec } from "../../../platform/module.ts";
import { loadRelease, releaseOrder } from "../commands/release-order.ts";
import { loadReserve, reserveOrder, type ReserveRequest } from "../commands/reserve-order.ts";
import type { StockStreams } from "../db/stock-streams.ts";
import { mergeLines } from "../domain/reservation.ts";

/**
 * StockReservationRequested (proto) -> a merged request. A malformed command is a bug of its
 * sender: it throws, so the event is retried and then dead-lettered for an operator, and the
 * saga's stock timeout cancels the order.
 */
function reserveRequest(e: StockReservationRequested): ReserveRequest {
  if (!e.orderId) throw new Error("StockReservationRequested without an order id");
  if (e.lines.length === 0) throw new Error(`StockReservationRequested for order ${e.orderId} without lines`);
  for (const [i, l] of e.lines.entries()) {
    if (!l.productId || l.productId.length > 64) throw new Error(`StockReservationRequested for order ${e.orderId}: lines[${i}].productId must be 1 to 64 characters`);
    if (!Number.isInteger(l.quantity) || l.quantity < 1) throw new Error(`StockReservationRequested for order ${e.orderId}: lines[${i}].quantity must be at least 1`);
  }
  return { orderId: e.orderId, lines: mergeLines(e.lines.map((l) => ({ productId: l.productId, quantity: l.quantity }))) };
}

/**
 * Inventory's part of the order-placement saga: reserve an order's stock (all lines or none) and
 * release it on request. Two-phase handlers: `load` reads the order's decision and the streams
 * outside the transaction; `handle` decides and only writes, with checks — a concurrent change
 * makes the platform load and handle the event again.
 */
export function sagaSubscription(storage: ModuleStorage, streams: StockStreams): SubscriptionSpec {
  return {
    name: "saga",
    handlers: [
      on(StockReservationRequestedSchema, {
        load: async (e) => {
          const req = reserveRequest(e);
          return { req, loaded: await loadReserve(storage, streams, req) };
        },
        handle: (_e, _meta, tx, { req, loaded }) => reserveOrder(streams, tx, req, loaded),
        // Orders racing for one product would all load its stream at one version: take turns.
        serializeBy: (e) => [`order:${e.orderId}`, ...e.lines.map((l) => `product:${l.productId}`)],
      }),
      on(StockReleaseRequestedSchema, {
        load: async (e) => {
          if (!e.orderId) throw new Error("StockReleaseRequested without an order id");
          return loadRelease(storage, streams, e.orderId);
        },
        handle: (e, _meta, tx, loaded) => releaseOrder(streams, tx, e.orderId, loaded),
        serializeBy: (e) => [`order:${e.orderId}`],
      }),
    ],
  };
}
