import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** The stock projection; see migrations/inventory/sqlite. (The streams live in es_events.) */
export const stock = sqliteTable("stock", {
  productId: text("product_id").primaryKey(),
  available: integer("available").notNull(),
  reserved: integer("reserved").notNull(),
  restocked: integer("restocked").notNull(),
  version: integer("version").notNull(),
});

/** What was decided per order. */
export const reservations = sqliteTable("reservations", {
  orderId: text("order_id").primaryKey(),
  status: text("status").notNull(),
  lines: text("lines").notNull(),
  updatedAt: integer("updated_at").notNull(),
});
