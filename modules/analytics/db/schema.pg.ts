import { bigint, index, integer, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

/** Products captured from catalog's table; see migrations/analytics/postgres. */
export const products = pgTable("products", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  priceCents: bigint("price_cents", { mode: "number" }).notNull(),
  version: bigint("version", { mode: "number" }).notNull(),
});

/** What is known of each order, from OrderCreated and OrderConfirmed in either order. */
export const orders = pgTable("orders", {
  orderId: text("order_id").primaryKey(),
  createdAt: bigint("created_at", { mode: "number" }),
  confirmedAt: bigint("confirmed_at", { mode: "number" }),
  confirmedDay: text("confirmed_day"),
  counted: integer("counted").notNull(),
  version: bigint("version", { mode: "number" }).notNull(),
});

/** The lines of each order, from OrderCreated. */
export const orderLines = pgTable(
  "order_lines",
  {
    orderId: text("order_id").notNull(),
    lineNo: integer("line_no").notNull(),
    productId: text("product_id").notNull(),
    quantity: integer("quantity").notNull(),
    unitPriceCents: bigint("unit_price_cents", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.lineNo] })],
);

/** Confirmed sales per UTC day and product. */
export const dailyProductSales = pgTable(
  "daily_product_sales",
  {
    day: text("day").notNull(),
    productId: text("product_id").notNull(),
    unitsSold: bigint("units_sold", { mode: "number" }).notNull(),
    revenueCents: bigint("revenue_cents", { mode: "number" }).notNull(),
    orders: bigint("orders", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.day, t.productId] }), index("daily_product_sales_by_product").on(t.productId, t.day)],
);
