import { bigint, pgTable, text } from "drizzle-orm/pg-core";

/** The stock projection; see migrations/inventory/postgres. (The streams live in es_events.) */
export const stock = pgTable("stock", {
  productId: text("product_id").primaryKey(),
  available: bigint("available", { mode: "number" }).notNull(),
  reserved: bigint("reserved", { mode: "number" }).notNull(),
  restocked: bigint("restocked", { mode: "number" }).notNull(),
  version: bigint("version", { mode: "number" }).notNull(),
});

/** What was decided per order. */
export const reservations = pgTable("reservations", {
  orderId: text("order_id").primaryKey(),
  status: text("status").notNull(),
  lines: text("lines").notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
});
