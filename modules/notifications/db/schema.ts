import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** One message per order and outcome; see migrations/notifications/sqlite. */
export const notifications = sqliteTable(
  "notifications",
  {
    orderId: text("order_id").notNull(),
    kind: text("kind").notNull(),
    customerId: text("customer_id").notNull(),
    message: text("message").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.kind] }), index("notifications_by_customer").on(t.customerId, t.createdAt, t.orderId, t.kind)],
);
