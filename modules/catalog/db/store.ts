import { eq, inArray } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import type { Product } from "../domain/product.ts";
import { products } from "./schema.ts";

/** Reads and writes of the catalog's table. Writes take the transaction's db. */
export const productStore = {
  byId(db: SqliteDb, id: string): Product | undefined {
    return db.select().from(products).where(eq(products.id, id)).get();
  },
  bySku(db: SqliteDb, sku: string): Product | undefined {
    return db.select().from(products).where(eq(products.sku, sku)).get();
  },
  byIds(db: SqliteDb, ids: readonly string[]): Product[] {
    if (ids.length === 0) return [];
    return db.select().from(products).where(inArray(products.id, [...ids])).all();
  },
  insert(db: SqliteDb, p: Product): void {
    db.insert(products).values(p).run();
  },
  update(db: SqliteDb, p: Product): void {
    db.update(products).set({ name: p.name, priceCents: p.priceCents, version: p.version, updatedAt: p.updatedAt }).where(eq(products.id, p.id)).run();
  },
};
