import { bigint, index, integer, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

/** Customer names from CustomerRegistered; see migrations/order-history/postgres. */
export const customers = pgTable("customers", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
});

/** Product names from ProductCreated/ProductUpdated, with the catalog version they are at. */
export const products = pgTable("products", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  version: bigint("version", { mode: "number" }).notNull(),
});

/** Orders by ids only: names are joined at query time, since they may arrive later. */
export const orders = pgTable(
  "orders",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull(),
    status: text("status").notNull(),
    totalCents: bigint("total_cents", { mode: "number" }).notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    lastEventAt: bigint("last_event_at", { mode: "number" }).notNull(),
  },
  (t) => [index("orders_by_customer").on(t.customerId, t.createdAt, t.id)],
);

/** The lines of each order, numbered in the order OrderCreated lists them. */
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

/** The saga's final outcome per order, possibly ahead of the order itself; overrides `orders.status` when read. */
export const orderStatus = pgTable("order_status", {
  orderId: text("order_id").primaryKey(),
  status: text("status").notNull(),
  at: bigint("at", { mode: "number" }).notNull(),
});
