import { and, asc, desc, eq, gte, lte, sql } from "drizzle-orm";
import type { ModuleStorage, SqliteDb, Tx } from "../../../platform/module.ts";
import { statementsFor, WriteConflict } from "../../../platform/storage/statements.ts";
import type { CapturedProduct, DailySales, OrderFacts, ProductSale, SaleLine } from "../domain/sales.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });

const putProduct = q.write((db, t) =>
  db
    .insert(t.products)
    .values({ id: p("id"), name: p("name"), priceCents: p("priceCents"), version: p("version") })
    .onConflictDoUpdate({
      target: t.products.id,
      set: { name: sql`excluded.name`, priceCents: sql`excluded.price_cents`, version: sql`excluded.version` },
      setWhere: sql`excluded.version > ${t.products.version}`,
    }),
);
const insertFacts = q.write((db, t) =>
  db.insert(t.orders).values({ orderId: p("orderId"), createdAt: p("createdAt"), confirmedAt: p("confirmedAt"), confirmedDay: p("confirmedDay"), counted: p("counted"), version: p("version") }),
);
const updateFacts = q.write((db, t) =>
  db
    .update(t.orders)
    .set({ createdAt: sql`${p("createdAt")}`, confirmedAt: sql`${p("confirmedAt")}`, confirmedDay: sql`${p("confirmedDay")}`, counted: sql`${p("counted")}`, version: sql`${p("version")}` })
    .where(and(eq(t.orders.orderId, p("orderId")), eq(t.orders.version, p("expectedVersion")))),
);
const addLine = q.write((db, t) =>
  db
    .insert(t.orderLines)
    .values({ orderId: p("orderId"), lineNo: p("lineNo"), productId: p("productId"), quantity: p("quantity"), unitPriceCents: p("unitPriceCents") })
    .onConflictDoNothing(),
);
const addSale = q.write((db, t) =>
  db
    .insert(t.dailyProductSales)
    .values({ day: p("day"), productId: p("productId"), unitsSold: p("units"), revenueCents: p("revenueCents"), orders: 1 })
    .onConflictDoUpdate({
      target: [t.dailyProductSales.day, t.dailyProductSales.productId],
      set: {
        unitsSold: sql`${t.dailyProductSales.unitsSold} + excluded.units_sold`,
        revenueCents: sql`${t.dailyProductSales.revenueCents} + excluded.revenue_cents`,
        orders: sql`${t.dailyProductSales.orders} + 1`,
      },
    }),
);

const factsOf = q.read<{ orderId: string; createdAt: number | null; confirmedAt: number | null; confirmedDay: string | null; counted: number; version: number }>((db, t) =>
  db.select().from(t.orders).where(eq(t.orders.orderId, p("orderId"))),
);
const linesOf = q.read<SaleLine>((db, t) =>
  db
    .select({ productId: t.orderLines.productId, quantity: t.orderLines.quantity, unitPriceCents: t.orderLines.unitPriceCents })
    .from(t.orderLines)
    .where(eq(t.orderLines.orderId, p("orderId")))
    .orderBy(asc(t.orderLines.lineNo)),
);
const productById = q.read<CapturedProduct>((db, t) => db.select().from(t.products).where(eq(t.products.id, p("id"))));
/** Daily sales rows with the captured product's name (empty until its capture arrives). */
const dailySales = (db: SqliteDb, t: typeof sqlite) =>
  db
    .select({
      day: t.dailyProductSales.day,
      productId: t.dailyProductSales.productId,
      productName: sql<string>`coalesce(${t.products.name}, '')`,
      unitsSold: t.dailyProductSales.unitsSold,
      revenueCents: t.dailyProductSales.revenueCents,
      orders: t.dailyProductSales.orders,
    })
    .from(t.dailyProductSales)
    .leftJoin(t.products, eq(t.products.id, t.dailyProductSales.productId));
const salesOfProduct = q.read<DailySales>((db, t) =>
  dailySales(db, t)
    .where(and(eq(t.dailyProductSales.productId, p("productId")), gte(t.dailyProductSales.day, p("from")), lte(t.dailyProductSales.day, p("to"))))
    .orderBy(asc(t.dailyProductSales.day)),
);
const salesOfDay = q.read<DailySales>((db, t) =>
  dailySales(db, t)
    .where(eq(t.dailyProductSales.day, p("day")))
    .orderBy(desc(t.dailyProductSales.revenueCents), asc(t.dailyProductSales.productId)),
);

/** A write lost against another one since the facts were read: the platform loads and handles the event again. */
const conflict = (orderId: string) => () => new WriteConflict(`analytics: order ${orderId} changed since it was read`);

/**
 * Writes of the sales projection (each idempotent or version-checked) and the reads of the
 * queries. Writes take the transaction, reads the storage.
 */
export const salesStore = {
  /** Inserts a captured product, or updates it when `product.version` is newer than the stored one. */
  putProduct(tx: Tx, product: CapturedProduct): void {
    tx.write(putProduct, { ...product });
  },

  /** Writes an order's next facts: a new row, or over the version they were read at (else `WriteConflict`). */
  putFacts(tx: Tx, facts: OrderFacts, isNew: boolean): void {
    const values = { ...facts, counted: facts.counted ? 1 : 0 };
    if (isNew) tx.write(insertFacts, values, { ifDuplicate: conflict(facts.orderId) });
    else tx.write(updateFacts, { ...values, expectedVersion: facts.version - 1 }, { ifUnchanged: conflict(facts.orderId) });
  },

  /** Records an order's lines, once. */
  addLines(tx: Tx, orderId: string, lines: readonly SaleLine[]): void {
    lines.forEach((l, lineNo) => tx.write(addLine, { orderId, lineNo, ...l }));
  },

  /** Adds one order's sales of each product to `day`. */
  addSales(tx: Tx, day: string, sales: readonly ProductSale[]): void {
    for (const s of sales) tx.write(addSale, { day, ...s });
  },

  async factsOf(storage: ModuleStorage, orderId: string): Promise<OrderFacts | undefined> {
    const [row] = await storage.read(factsOf, { orderId });
    return row && { ...row, counted: row.counted === 1 };
  },

  linesOf(storage: ModuleStorage, orderId: string): Promise<SaleLine[]> {
    return storage.read(linesOf, { orderId });
  },

  async product(storage: ModuleStorage, id: string): Promise<CapturedProduct | undefined> {
    return (await storage.read(productById, { id }))[0];
  },

  /** A product's days with sales from `from` to `to` (inclusive), in order. */
  salesOfProduct(storage: ModuleStorage, productId: string, from: string, to: string): Promise<DailySales[]> {
    return storage.read(salesOfProduct, { productId, from, to });
  },

  /** Every product's sales on `day`, highest revenue first. */
  salesOfDay(storage: ModuleStorage, day: string): Promise<DailySales[]> {
    return storage.read(salesOfDay, { day });
  },
};
