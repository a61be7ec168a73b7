import { and, desc, eq, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor } from "../../../platform/storage/statements.ts";
import { contradictingOutcome, type CustomerName, type HistoryLine, type HistoryOrder, type OrderOutcome, type OrderStatus, type PlacedOrder, type ProductName } from "../domain/order-history.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const putCustomer = q.write((db, t) => db.insert(t.customers).values({ id: p("id"), name: p("name") }).onConflictDoNothing());
const putProduct = q.write((db, t) =>
  db
    .insert(t.products)
    .values({ id: p("id"), name: p("name"), version: p("version") })
    .onConflictDoUpdate({
      target: t.products.id,
      set: { name: sql`excluded.name`, version: sql`excluded.version` },
      setWhere: sql`excluded.version > ${t.products.version}`,
    }),
);
const addOrder = q.write((db, t) =>
  db
    .insert(t.orders)
    .values({ id: p("id"), customerId: p("customerId"), status: p("status"), totalCents: p("totalCents"), createdAt: p("createdAt"), lastEventAt: p("lastEventAt") })
    .onConflictDoNothing(),
);
const addLine = q.write((db, t) =>
  db
    .insert(t.orderLines)
    .values({ orderId: p("orderId"), lineNo: p("lineNo"), productId: p("productId"), quantity: p("quantity"), unitPriceCents: p("unitPriceCents") })
    .onConflictDoNothing(),
);
// A repeat of the recorded status touches its row (1 change, the first `at` kept); a different
// status matches no row (0 changes), which the caller's `ifUnchanged` turns into an error.
const putStatus = q.write((db, t) =>
  db
    .insert(t.orderStatus)
    .values({ orderId: p("orderId"), status: p("status"), at: p("at") })
    .onConflictDoUpdate({
      target: t.orderStatus.orderId,
      set: { at: sql`${t.orderStatus.at}` },
      setWhere: sql`${t.orderStatus.status} = excluded.status`,
    }),
);
const ordersOf = q.read<Omit<HistoryOrder, "lines">>((db, t) =>
  db
    .select({
      id: t.orders.id,
      customerId: t.orders.customerId,
      customerName: sql<string>`coalesce(${t.customers.name}, '')`,
      status: sql<OrderStatus>`coalesce(${t.orderStatus.status}, ${t.orders.status})`,
      totalCents: t.orders.totalCents,
      createdAt: t.orders.createdAt,
    })
    .from(t.orders)
    .leftJoin(t.customers, eq(t.customers.id, t.orders.customerId))
    .leftJoin(t.orderStatus, eq(t.orderStatus.orderId, t.orders.id))
    .where(eq(t.orders.customerId, p("customerId")))
    .orderBy(desc(t.orders.createdAt), desc(t.orders.id)),
);
const linesOf = q.read<HistoryLine & { orderId: string; lineNo: number }>((db, t) =>
  db
    .select({
      orderId: t.orderLines.orderId,
      lineNo: t.orderLines.lineNo,
      productId: t.orderLines.productId,
      productName: sql<string>`coalesce(${t.products.name}, '')`,
      quantity: t.orderLines.quantity,
      unitPriceCents: t.orderLines.unitPriceCents,
    })
    .from(t.orderLines)
    .innerJoin(t.orders, and(eq(t.orders.id, t.orderLines.orderId), eq(t.orders.customerId, p("customerId"))))
    .leftJoin(t.products, eq(t.products.id, t.orderLines.productId)),
);

/**
 * Writes of the projection (each idempotent, so a redelivery under a new envelope id changes
 * nothing either) and the two reads of a customer's history. Writes take the transaction's db.
 */
export const historyStore = {
  /** First registration wins: a later rename event would update, never a replayed registration. */
  putCustomer(tx: Tx, c: CustomerName): void {
    tx.write(putCustomer, { id: c.id, name: c.name });
  },

  /** Inserts the product, or renames it when `p.version` is newer than the stored version. */
  putProduct(tx: Tx, product: ProductName): void {
    tx.write(putProduct, { id: product.id, name: product.name, version: product.version });
  },

  /** Records a placed order and its lines, once. */
  addOrder(tx: Tx, o: PlacedOrder, status: OrderStatus, at: number): void {
    tx.write(addOrder, { id: o.id, customerId: o.customerId, status, totalCents: o.totalCents, createdAt: o.createdAt, lastEventAt: at });
    o.lines.forEach((l, lineNo) => tx.write(addLine, { orderId: o.id, lineNo, productId: l.productId, quantity: l.quantity, unitPriceCents: l.unitPriceCents }));
  },

  /**
   * Records an order's final status, whether or not its OrderCreated has arrived (the read shows
   * it over the placed order's PENDING from then on). Recording the same status again changes
   * nothing; a different final status fails the body with `contradictingOutcome`.
   */
  setFinalStatus(tx: Tx, o: OrderOutcome): void {
    tx.write(putStatus, { orderId: o.orderId, status: o.status, at: o.at }, { ifUnchanged: () => contradictingOutcome(o) });
  },

  /** A customer's orders newest first (ties by id), with the customer's name or "" and the final status if any. */
  ordersOf(storage: ModuleStorage, customerId: string): Promise<Omit<HistoryOrder, "lines">[]> {
    return storage.read(ordersOf, { customerId });
  },

  /** Every line of a customer's orders, with product names or "". */
  linesOf(storage: ModuleStorage, customerId: string): Promise<(HistoryLine & { orderId: string; lineNo: number })[]> {
    return storage.read(linesOf, { customerId });
  },
};
