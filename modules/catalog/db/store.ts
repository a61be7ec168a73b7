import { eq, sql } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import { preparedQuery } from "../../../platform/storage/prepared.ts";
import type { Product } from "../domain/product.ts";
import { products } from "./schema.ts";

const p = sql.placeholder;
const byId = preparedQuery((db) => db.select().from(products).where(eq(products.id, p("id"))).prepare());
const bySku = preparedQuery((db) => db.select().from(products).where(eq(products.sku, p("sku"))).prepare());
// One statement for any number of ids: the ids travel as one JSON array parameter.
const byIds = preparedQuery((db) => db.select().from(products).where(sql`${products.id} IN (SELECT value FROM json_each(${p("ids")}))`).prepare());
const insert = preparedQuery((db) =>
  db.insert(products).values({ id: p("id"), sku: p("sku"), name: p("name"), priceCents: p("priceCents"), version: p("version"), createdAt: p("createdAt"), updatedAt: p("updatedAt") }).prepare(),
);
const update = preparedQuery((db) =>
  db.update(products).set({ name: sql`${p("name")}`, priceCents: sql`${p("priceCents")}`, version: sql`${p("version")}`, updatedAt: sql`${p("updatedAt")}` }).where(eq(products.id, p("id"))).prepare(),
);

/** Reads and writes of the catalog's table. Writes take the transaction's db. */
export const productStore = {
  byId(db: SqliteDb, id: string): Product | undefined {
    return byId(db).get({ id });
  },
  bySku(db: SqliteDb, sku: string): Product | undefined {
    return bySku(db).get({ sku });
  },
  byIds(db: SqliteDb, ids: readonly string[]): Product[] {
    return ids.length === 0 ? [] : byIds(db).all({ ids: JSON.stringify(ids) });
  },
  insert(db: SqliteDb, product: Product): void {
    insert(db).run({ ...product });
  },
  update(db: SqliteDb, product: Product): void {
    update(db).run({ ...product });
  },
};
