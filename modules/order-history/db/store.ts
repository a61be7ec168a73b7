import { and, desc, eq, sql } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import { preparedQuery } from "../../../platform/storage/prepared.ts";
import type { CustomerName, HistoryLine, HistoryOrder, OrderStatus, PlacedOrder, ProductName } from "../domain/order-history.ts";
import { customers, orderLines, orders, products } from "./schema.ts";

const p = sql.placeholder;
const putCustomer = preparedQuery((db) => db.insert(customers).values({ id: p("id"), name: p("name") }).onConflictDoNothing().prepare());
const putProduct = preparedQuery((db) =>
  db
    .insert(products)
    .values({ id: p("id"), name: p("name"), version: p("version") })
    .onConflictDoUpdate({
      target: products.id,
      set: { name: sql`excluded.name`, version: sql`excluded.version` },
      setWhere: sql`excluded.version > ${products.version}`,
    })
    .prepare(),
);
const addOrder = preparedQuery((db) =>
  db
    .insert(orders)
    .values({ id: p("id"), customerId: p("customerId"), status: p("status"), totalCents: p("totalCents"), createdAt: p("createdAt"), lastEventAt: p("lastEventAt") })
    .onConflictDoNothing()
    .prepare(),
);
const addLine = preparedQuery((db) =>
  db
    .insert(orderLines)
    .values({ orderId: p("orderId"), lineNo: p("lineNo"), productId: p("productId"), quantity: p("quantity"), unitPriceCents: p("unitPriceCents") })
    .onConflictDoNothing()
    .prepare(),
);

/**
 * Writes of the projection (each idempotent, so a redelivery under a new envelope id changes
 * nothing either) and the two reads of a customer's history. Writes take the transaction's db.
 */
export const historyStore = {
  /** First registration wins: a later rename event would update, never a replayed registration. */
  putCustomer(db: SqliteDb, c: CustomerName): void {
    putCustomer(db).run({ id: c.id, name: c.name });
  },

  /** Inserts the product, or renames it when `p.version` is newer than the stored version. */
  putProduct(db: SqliteDb, product: ProductName): void {
    putProduct(db).run({ id: product.id, name: product.name, version: product.version });
  },

  /** Records a placed order and its lines, once. */
  addOrder(db: SqliteDb, o: PlacedOrder, status: OrderStatus, at: number): void {
    addOrder(db).run({ id: o.id, customerId: o.customerId, status, totalCents: o.totalCents, createdAt: o.createdAt, lastEventAt: at });
    const line = addLine(db);
    o.lines.forEach((l, lineNo) => line.run({ orderId: o.id, lineNo, productId: l.productId, quantity: l.quantity, unitPriceCents: l.unitPriceCents }));
  },

  /** Moves an order to `status`; the hook for OrderConfirmed/OrderCancelled handlers. */
  setStatus(db: SqliteDb, orderId: string, status: OrderStatus, at: number): void {
    db.update(orders).set({ status, lastEventAt: at }).where(eq(orders.id, orderId)).run();
  },

  /** A customer's orders newest first (ties by id), with the customer's name or "". */
  ordersOf(db: SqliteDb, customerId: string): Omit<HistoryOrder, "lines">[] {
    return db
      .select({
        id: orders.id,
        customerId: orders.customerId,
        customerName: sql<string>`coalesce(${customers.name}, '')`,
        status: sql<OrderStatus>`${orders.status}`,
        totalCents: orders.totalCents,
        createdAt: orders.createdAt,
      })
      .from(orders)
      .leftJoin(customers, eq(customers.id, orders.customerId))
      .where(eq(orders.customerId, customerId))
      .orderBy(desc(orders.createdAt), desc(orders.id))
      .all();
  },

  /** Every line of a customer's orders, with product names or "". */
  linesOf(db: SqliteDb, customerId: string): (HistoryLine & { orderId: string; lineNo: number })[] {
    return db
      .select({
        orderId: orderLines.orderId,
        lineNo: orderLines.lineNo,
        productId: orderLines.productId,
        productName: sql<string>`coalesce(${products.name}, '')`,
        quantity: orderLines.quantity,
        unitPriceCents: orderLines.unitPriceCents,
      })
      .from(orderLines)
      .innerJoin(orders, and(eq(orders.id, orderLines.orderId), eq(orders.customerId, customerId)))
      .leftJoin(products, eq(products.id, orderLines.productId))
      .all();
  },
};
