import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** Products captured from catalog's table; see migrations/analytics/sqlite. */
export const products = sqliteTable("products", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  priceCents: integer("price_cents").notNull(),
  version: integer("version").notNull(),
});

/** What is known of each order, from OrderCreated and OrderConfirmed in either order. */
export const orders = sqliteTable("orders", {
  orderId: text("order_id").primaryKey(),
  createdAt: integer("created_at"),
  confirmedAt: integer("confirmed_at"),
  confirmedDay: text("confirmed_day"),
  counted: integer("counted").notNull(),
  version: integer("version").notNull(),
});

/** The lines of each order, from OrderCreated. */
export const orderLines = sqliteTable(
  "order_lines",
  {
    orderId: text("order_id").notNull(),
    lineNo: integer("line_no").notNull(),
    productId: text("product_id").notNull(),
    quantity: integer("quantity").notNull(),
    unitPriceCents: integer("unit_price_cents").notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.lineNo] })],
);

/** Confirmed sales per UTC day and product. */
export const dailyProductSales = sqliteTable(
  "daily_product_sales",
  {
    day: text("day").notNull(),
    productId: text("product_id").notNull(),
    unitsSold: integer("units_sold").notNull(),
    revenueCents: integer("revenue_cents").notNull(),
    orders: integer("orders").notNull(),
  },
  (t) => [primaryKey({ columns: [t.day, t.productId] }), index("daily_product_sales_by_product").on(t.productId, t.day)],
);
