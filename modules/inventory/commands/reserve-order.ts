import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import type { StockStream, StockStreams } from "../db/stock-streams.ts";
import { reservationStore } from "../db/store.ts";
import { decideReservation, type Line, type Reservation } from "../domain/reservation.ts";
import { inventoryReserved, reservationFailed } from "../events/publish.ts";

/** A reservation request: the order and its lines, merged (one per product, sorted). */
export interface ReserveRequest {
  readonly orderId: string;
  readonly lines: readonly Line[];
}

/** What deciding a request needs: the order's earlier decision, else every line's stream. */
export interface ReserveLoaded {
  readonly known: Reservation | undefined;
  readonly streams: readonly StockStream[];
}

/** The read phase, outside the transaction. A known order needs no streams. */
export async function loadReserve(storage: ModuleStorage, streams: StockStreams, req: ReserveRequest): Promise<ReserveLoaded> {
  const known = await reservationStore.byId(storage, req.orderId);
  if (known) return { known, streams: [] };
  return { known, streams: await Promise.all(req.lines.map((l) => streams.load(l.productId))) };
}

/**
 * The write phase: all lines or none. Reserving appends StockReserved to every line's stream
 * and records RESERVED; refusing appends nothing and records FAILED; a known order is answered
 * as before. Whatever changed since the load (a stream appended to, the order decided) fails a
 * write with `WriteConflict`, and the platform loads and decides again.
 */
export function reserveOrder(streams: StockStreams, tx: Tx, req: ReserveRequest, loaded: ReserveLoaded): void {
  const byProduct = new Map(loaded.streams.map((s) => [s.streamId, s]));
  const decision = decideReservation(loaded.known, req.lines, (productId) => byProduct.get(productId)!.state);
  const now = Date.now();
  switch (decision.kind) {
    case "repeat":
      if (decision.outcome.reserved) inventoryReserved(tx, req.orderId);
      else reservationFailed(tx, req.orderId, decision.outcome.reason);
      return;
    case "reserve":
      for (const l of decision.lines) streams.append(tx, byProduct.get(l.productId)!, [{ type: "reserved", orderId: req.orderId, quantity: l.quantity }]);
      reservationStore.insert(tx, { orderId: req.orderId, status: "RESERVED", lines: decision.lines }, now);
      inventoryReserved(tx, req.orderId);
      return;
    case "refuse":
      reservationStore.insert(tx, { orderId: req.orderId, status: "FAILED", lines: [] }, now);
      reservationFailed(tx, req.orderId, "out-of-stock");
      return;
  }
}
