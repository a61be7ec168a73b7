import { bigint, index, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

/** One message per order and outcome; see migrations/notifications/postgres. */
export const notifications = pgTable(
  "notifications",
  {
    orderId: text("order_id").notNull(),
    kind: text("kind").notNull(),
    customerId: text("customer_id").notNull(),
    message: text("message").notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.kind] }), index("notifications_by_customer").on(t.customerId, t.createdAt, t.orderId, t.kind)],
);
