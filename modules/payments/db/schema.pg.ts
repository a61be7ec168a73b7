import { bigint, index, pgTable, text } from "drizzle-orm/pg-core";

/** Each customer's credit; see migrations/payments/postgres. */
export const accounts = pgTable("accounts", {
  customerId: text("customer_id").primaryKey(),
  creditLimitCents: bigint("credit_limit_cents", { mode: "number" }).notNull(),
  availableCents: bigint("available_cents", { mode: "number" }).notNull(),
  registeredAt: bigint("registered_at", { mode: "number" }),
  version: bigint("version", { mode: "number" }).notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
});

/** One payment per order. */
export const payments = pgTable(
  "payments",
  {
    orderId: text("order_id").primaryKey(),
    customerId: text("customer_id").notNull(),
    amountCents: bigint("amount_cents", { mode: "number" }).notNull(),
    status: text("status").notNull(),
    reason: text("reason").notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
  },
  (t) => [index("payments_by_customer_status").on(t.customerId, t.status, t.createdAt)],
);
