import { bigint, integer, pgTable, primaryKey, text } from "drizzle-orm/pg-core";
import type { OrderStatus } from "../domain/order.ts";
import type { SagaState } from "../domain/saga.ts";

/** Orders; see migrations/orders/postgres. */
export const orders = pgTable("orders", {
  id: text("id").primaryKey(),
  customerId: text("customer_id").notNull(),
  status: text("status").$type<OrderStatus>().notNull(),
  totalCents: bigint("total_cents", { mode: "number" }).notNull(),
  reason: text("reason").notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
});

/** The lines of an order, `line_no` = position in the request (0-based); see migrations/orders/postgres. */
export const orderLines = pgTable(
  "order_lines",
  {
    orderId: text("order_id").notNull(),
    lineNo: integer("line_no").notNull(),
    productId: text("product_id").notNull(),
    quantity: integer("quantity").notNull(),
    unitPriceCents: bigint("unit_price_cents", { mode: "number" }).notNull(),
    lineTotalCents: bigint("line_total_cents", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.lineNo] })],
);

/** Idempotency keys: the request hash each key was first used with, and the order it created; see migrations/orders/postgres. */
export const idempotencyKeys = pgTable("idempotency_keys", {
  key: text("key").primaryKey(),
  requestHash: text("request_hash").notNull(),
  orderId: text("order_id").notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
});

/** The placement saga of each order; see migrations/orders/postgres/0003_saga.sql. */
export const sagas = pgTable("sagas", {
  orderId: text("order_id").primaryKey(),
  state: text("state").$type<SagaState>().notNull(),
  reason: text("reason").notNull(),
  deadlineAt: bigint("deadline_at", { mode: "number" }),
  refundPending: integer("refund_pending").notNull(),
  releasePending: integer("release_pending").notNull(),
  attempts: integer("attempts").notNull(),
  version: bigint("version", { mode: "number" }).notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
});

/** Every transition of a saga. */
export const sagaHistory = pgTable(
  "saga_history",
  {
    orderId: text("order_id").notNull(),
    version: bigint("version", { mode: "number" }).notNull(),
    at: bigint("at", { mode: "number" }).notNull(),
    state: text("state").$type<SagaState>().notNull(),
    note: text("note").notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.version] })],
);
