import { isMessage, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { StockReleasedSchema, StockReservedSchema, StockRestockedSchema } from "../../../gen/inventory/v1/events_pb.ts";
import { eventStore, type Loaded } from "../../../platform/eventsourcing/event-store.ts";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { evolve, NO_STOCK, type Stock, type StockEvent } from "../domain/stock.ts";
import { stockStore, type StockRow } from "./store.ts";

/** A product's stream as loaded: its stock and version. The stream id is the product id. */
export type StockStream = Loaded<Stock>;

/** Stored proto event -> the domain's event. */
function toDomain(e: MessageShape<DescMessage>): StockEvent {
  if (isMessage(e, StockRestockedSchema)) return { type: "restocked", quantity: Number(e.quantity) };
  if (isMessage(e, StockReservedSchema)) return { type: "reserved", orderId: e.orderId, quantity: Number(e.quantity) };
  if (isMessage(e, StockReleasedSchema)) return { type: "released", orderId: e.orderId, quantity: Number(e.quantity) };
  throw new Error(`inventory: unexpected stream event ${e.$typeName}`);
}

/** The domain's event -> the proto event stored. */
function toProto(e: StockEvent): { schema: DescMessage; value: MessageInitShape<DescMessage> } {
  switch (e.type) {
    case "restocked":
      return { schema: StockRestockedSchema, value: { quantity: BigInt(e.quantity) } };
    case "reserved":
      return { schema: StockReservedSchema, value: { orderId: e.orderId, quantity: BigInt(e.quantity) } };
    case "released":
      return { schema: StockReleasedSchema, value: { orderId: e.orderId, quantity: BigInt(e.quantity) } };
  }
}

/**
 * The products' stock streams in inventory's event store. Decisions load a stream; every append
 * also writes the `stock` projection row in the same transaction, so queries read one row and
 * the projection is never behind a committed event.
 */
export function stockStreams(storage: ModuleStorage, snapshotEvery: number) {
  const store = eventStore<Stock>(storage, {
    events: [StockRestockedSchema, StockReservedSchema, StockReleasedSchema],
    initial: NO_STOCK,
    apply: (s, e) => evolve(s, toDomain(e)),
    snapshotEvery,
  });
  return {
    load: (productId: string): Promise<StockStream> => store.load(productId),
    /** Appends `events` after the loaded version (`WriteConflict` if someone else did first) and updates the projection. */
    append(tx: Tx, loaded: StockStream, events: readonly StockEvent[]): StockStream {
      const after = store.append(tx, loaded, events.map(toProto));
      stockStore.put(tx, toRow(after));
      return after;
    },
  };
}

/** The streams handle (see `stockStreams`). */
export type StockStreams = ReturnType<typeof stockStreams>;

/** A loaded stream as a projection row. */
export function toRow(s: StockStream): StockRow {
  return { productId: s.streamId, version: s.version, ...s.state };
}
