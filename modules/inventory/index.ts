import { InventoryReleasedSchema, InventoryReservationFailedSchema, InventoryReservedSchema } from "../../gen/inventory/v1/events_pb.ts";
import { InventoryService } from "../../gen/inventory/v1/inventory_pb.ts";
import { migrations } from "../../gen/migrations/inventory.ts";
import { withEventStore } from "../../platform/eventsourcing/event-store.ts";
import { defineModule, service } from "../../platform/module.ts";
import { restocker } from "./commands/restock.ts";
import { InventoryConfig } from "./config.ts";
import { stockStreams } from "./db/stock-streams.ts";
import { sagaSubscription } from "./events/saga.ts";
import { inventoryRoutes } from "./rest.ts";
import { inventoryRpc } from "./rpc.ts";

/**
 * inventory — stock per product, event-sourced: a product's stock is the fold of its stream of
 * StockRestocked, StockReserved and StockReleased events in inventory's own event store
 * (snapshotted every `modules.inventory.snapshotEvery` events, default 20); a `stock`
 * projection written with each append serves the reads.
 * Serves `inventory.v1.InventoryService` and `/api/v1/inventory/{productId}` (GET, POST …/restock).
 * Takes part in the order saga through one subscription: StockReservationRequested reserves all
 * of an order's lines or none (InventoryReserved / InventoryReservationFailed), and
 * StockReleaseRequested gives them back (InventoryReleased) — each once per order. Calls no
 * other module (it does not check that a product exists in the catalog).
 */
export default defineModule<InventoryConfig>({
  name: "inventory",
  migrations: withEventStore(migrations),
  config: InventoryConfig,
  services: [InventoryService],
  publishes: [InventoryReservedSchema, InventoryReservationFailedSchema, InventoryReleasedSchema],
  start: ({ storage, config }) => {
    const streams = stockStreams(storage, config.snapshotEvery);
    const restock = restocker(storage, streams);
    return {
      services: [service(InventoryService, inventoryRpc(storage, restock))],
      routes: inventoryRoutes(storage, restock),
      subscriptions: [sagaSubscription(storage, streams)],
    };
  },
});
