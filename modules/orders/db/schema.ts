import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import type { OrderStatus } from "../domain/order.ts";
import type { SagaState } from "../domain/saga.ts";

/** Orders; see migrations/orders/sqlite. */
export const orders = sqliteTable("orders", {
  id: text("id").primaryKey(),
  customerId: text("customer_id").notNull(),
  status: text("status").$type<OrderStatus>().notNull(),
  totalCents: integer("total_cents").notNull(),
  reason: text("reason").notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** The lines of an order, `line_no` = position in the request (0-based). */
export const orderLines = sqliteTable(
  "order_lines",
  {
    orderId: text("order_id").notNull(),
    lineNo: integer("line_no").notNull(),
    productId: text("product_id").notNull(),
    quantity: integer("quantity").notNull(),
    unitPriceCents: integer("unit_price_cents").notNull(),
    lineTotalCents: integer("line_total_cents").notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.lineNo] })],
);

/** Idempotency keys: the request hash each key was first used with, and the order it created. */
export const idempotencyKeys = sqliteTable("idempotency_keys", {
  key: text("key").primaryKey(),
  requestHash: text("request_hash").notNull(),
  orderId: text("order_id").notNull(),
  createdAt: integer("created_at").notNull(),
});

/** The placement saga of each order; see migrations/orders/sqlite/0003_saga.sql. */
export const sagas = sqliteTable("sagas", {
  orderId: text("order_id").primaryKey(),
  state: text("state").$type<SagaState>().notNull(),
  reason: text("reason").notNull(),
  deadlineAt: integer("deadline_at"),
  refundPending: integer("refund_pending").notNull(),
  releasePending: integer("release_pending").notNull(),
  attempts: integer("attempts").notNull(),
  version: integer("version").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Every transition of a saga. */
export const sagaHistory = sqliteTable(
  "saga_history",
  {
    orderId: text("order_id").notNull(),
    version: integer("version").notNull(),
    at: integer("at").notNull(),
    state: text("state").$type<SagaState>().notNull(),
    note: text("note").notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.version] })],
);
