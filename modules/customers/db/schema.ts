import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** The customers module's only table; see migrations/customers/sqlite. */
export const customers = sqliteTable("customers", {
  id: text("id").primaryKey(),
  email: text("email").notNull().unique(),
  name: text("name").notNull(),
  creditLimitCents: integer("credit_limit_cents").notNull(),
  createdAt: integer("created_at").notNull(),
});
