import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import type { StockStream, StockStreams } from "../db/stock-streams.ts";
import { reservationStore } from "../db/store.ts";
import { decideRelease, type Reservation } from "../domain/reservation.ts";
import { inventoryReleased } from "../events/publish.ts";

/** What deciding a release needs: the order's decision, and for a reservation its streams. */
export interface ReleaseLoaded {
  readonly known: Reservation | undefined;
  readonly streams: readonly StockStream[];
}

/** The read phase, outside the transaction. */
export async function loadRelease(storage: ModuleStorage, streams: StockStreams, orderId: string): Promise<ReleaseLoaded> {
  const known = await reservationStore.byId(storage, orderId);
  if (known?.status !== "RESERVED") return { known, streams: [] };
  return { known, streams: await Promise.all(known.lines.map((l) => streams.load(l.productId))) };
}

/**
 * The write phase: a reservation is given back once (StockReleased on every line's stream,
 * RESERVED -> RELEASED); an order never reserved is recorded RELEASED so a later request is
 * refused. Every request, the first or a repeat, is acknowledged with InventoryReleased.
 */
export function releaseOrder(streams: StockStreams, tx: Tx, orderId: string, loaded: ReleaseLoaded): void {
  const decision = decideRelease(loaded.known);
  const now = Date.now();
  switch (decision.kind) {
    case "release": {
      const byProduct = new Map(loaded.streams.map((s) => [s.streamId, s]));
      for (const l of decision.lines) streams.append(tx, byProduct.get(l.productId)!, [{ type: "released", orderId, quantity: l.quantity }]);
      reservationStore.release(tx, orderId, now);
      break;
    }
    case "tombstone":
      reservationStore.insert(tx, { orderId, status: "RELEASED", lines: [] }, now);
      break;
    case "acknowledge":
      break;
  }
  inventoryReleased(tx, orderId);
}
