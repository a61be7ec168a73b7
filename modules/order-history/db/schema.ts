import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** Customer names from CustomerRegistered; see migrations/order-history/sqlite. */
export const customers = sqliteTable("customers", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
});

/** Product names from ProductCreated/ProductUpdated, with the catalog version they are at. */
export const products = sqliteTable("products", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  version: integer("version").notNull(),
});

/** Orders by ids only: names are joined at query time, since they may arrive later. */
export const orders = sqliteTable(
  "orders",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull(),
    status: text("status").notNull(),
    totalCents: integer("total_cents").notNull(),
    createdAt: integer("created_at").notNull(),
    lastEventAt: integer("last_event_at").notNull(),
  },
  (t) => [index("orders_by_customer").on(t.customerId, t.createdAt, t.id)],
);

/** The lines of each order, numbered in the order OrderCreated lists them. */
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

/** The saga's final outcome per order, possibly ahead of the order itself; overrides `orders.status` when read. */
export const orderStatus = sqliteTable("order_status", {
  orderId: text("order_id").primaryKey(),
  status: text("status").notNull(),
  at: integer("at").notNull(),
});
