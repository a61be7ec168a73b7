import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** The catalog's only table; see migrations/catalog/sqlite. */
export const products = sqliteTable("products", {
  id: text("id").primaryKey(),
  sku: text("sku").notNull().unique(),
  name: text("name").notNull(),
  priceCents: integer("price_cents").notNull(),
  version: integer("version").notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});
