import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** Each customer's credit; see migrations/payments/sqlite. */
export const accounts = sqliteTable("accounts", {
  customerId: text("customer_id").primaryKey(),
  creditLimitCents: integer("credit_limit_cents").notNull(),
  availableCents: integer("available_cents").notNull(),
  registeredAt: integer("registered_at"),
  version: integer("version").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** One payment per order. */
export const payments = sqliteTable(
  "payments",
  {
    orderId: text("order_id").primaryKey(),
    customerId: text("customer_id").notNull(),
    amountCents: integer("amount_cents").notNull(),
    status: text("status").notNull(),
    reason: text("reason").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("payments_by_customer_status").on(t.customerId, t.status, t.createdAt)],
);
