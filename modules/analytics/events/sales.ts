import { timestampMs } from "@bufbuild/protobuf/wkt";
import { OrderConfirmedSchema, OrderCreatedSchema } from "../../../gen/orders/v1/events_pb.ts";
import { ChangeEventSchema } from "../../../gen/selaras/v1/cdc_pb.ts";
import { isChangeOf } from "../../../platform/cdc/capture-event.ts";
import { on, type ModuleStorage, type SubscriptionSpec } from "../../../platform/module.ts";
import { capturedProduct, checkOrder, recordFact, salesOf, type OrderFacts, type SaleLine } from "../domain/sales.ts";
import { salesStore } from "../db/store.ts";

/** The catalog table analytics captures (declared in the manifest's `captures`). */
export const PRODUCTS = { module: "catalog", table: "products" } as const;

/**
 * The read model's only input, one durable subscription:
 * - captured changes of catalog's `products` rows (created, updated, snapshotted) keep each
 *   product's name and price, newest catalog version wins; a deleted product keeps its name;
 * - OrderCreated brings an order's lines, OrderConfirmed makes it a sale. Either may come first:
 *   the second one adds the order's lines to the confirmation's UTC day, once (the order's facts
 *   are written under optimistic concurrency; a lost race loads and handles the event again).
 */
export function salesProjection(storage: ModuleStorage): SubscriptionSpec {
  return {
    name: "sales",
    // A read model nobody waits on: batches fill for up to 20 ms, so it costs fewer transactions.
    lingerMs: 20,
    handlers: [
      on(ChangeEventSchema, (e, _meta, tx) => {
        if (!isChangeOf(e, PRODUCTS.module, PRODUCTS.table)) return;
        if (e.op === "c" || e.op === "u" || e.op === "r") salesStore.putProduct(tx, capturedProduct(e.after));
      }),
      on(OrderCreatedSchema, {
        load: (e) => salesStore.factsOf(storage, e.orderId),
        handle: (e, meta, tx, facts: OrderFacts | undefined) => {
          const lines: SaleLine[] = e.lines.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPriceCents: Number(l.unitPriceCents) }));
          checkOrder(e.orderId, lines);
          const decision = recordFact(facts, e.orderId, { kind: "created", at: e.createdAt ? timestampMs(e.createdAt) : meta.occurredAt });
          if (!decision) return;
          salesStore.putFacts(tx, decision.next, decision.isNew);
          salesStore.addLines(tx, e.orderId, lines);
          if (decision.countOn) salesStore.addSales(tx, decision.countOn, salesOf(lines));
        },
      }),
      on(OrderConfirmedSchema, {
        load: async (e) => {
          const facts = await salesStore.factsOf(storage, e.orderId);
          return { facts, lines: facts?.createdAt != null ? await salesStore.linesOf(storage, e.orderId) : [] };
        },
        handle: (e, meta, tx, { facts, lines }) => {
          checkOrder(e.orderId);
          const decision = recordFact(facts, e.orderId, { kind: "confirmed", at: meta.occurredAt });
          if (!decision) return;
          salesStore.putFacts(tx, decision.next, decision.isNew);
          if (decision.countOn) salesStore.addSales(tx, decision.countOn, salesOf(lines));
        },
      }),
    ],
  };
}
