import { bigint, pgTable, text } from "drizzle-orm/pg-core";

/** The customers module's only table; see migrations/customers/postgres. */
export const customers = pgTable("customers", {
  id: text("id").primaryKey(),
  email: text("email").notNull().unique(),
  name: text("name").notNull(),
  creditLimitCents: bigint("credit_limit_cents", { mode: "number" }).notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
});
