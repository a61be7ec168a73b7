import { and, eq, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor, type WriteChecks } from "../../../platform/storage/statements.ts";
import type { Product } from "../domain/product.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const byId = q.read<Product>((db, t) => db.select().from(t.products).where(eq(t.products.id, p("id"))));
// One statement for any number of ids: the ids travel as one JSON array parameter — a text one on
// Postgres, as Bun.sql would encode a string bound to a jsonb parameter as a JSON string.
const byIds = q.read<Product>((db, t, dialect) =>
  db
    .select()
    .from(t.products)
    .where(dialect === "sqlite" ? sql`${t.products.id} IN (SELECT value FROM json_each(${p("ids")}))` : sql`${t.products.id} IN (SELECT jsonb_array_elements_text(${p("ids")}::text::jsonb))`),
);
const insert = q.write((db, t) =>
  db.insert(t.products).values({ id: p("id"), sku: p("sku"), name: p("name"), priceCents: p("priceCents"), version: p("version"), createdAt: p("createdAt"), updatedAt: p("updatedAt") }),
);
// Optimistic concurrency: the update applies only to the version the change was computed from.
const update = q.write((db, t) =>
  db
    .update(t.products)
    .set({ name: sql`${p("name")}`, priceCents: sql`${p("priceCents")}`, version: sql`${p("version")}`, updatedAt: sql`${p("updatedAt")}` })
    .where(and(eq(t.products.id, p("id")), eq(t.products.version, p("expectedVersion")))),
);

/** Reads and writes of the catalog's table. Reads take the storage, writes the transaction. */
export const productStore = {
  async byId(storage: ModuleStorage, id: string): Promise<Product | undefined> {
    return (await storage.read(byId, { id }))[0];
  },
  byIds(storage: ModuleStorage, ids: readonly string[]): Promise<Product[]> {
    return ids.length === 0 ? Promise.resolve([]) : storage.read(byIds, { ids: JSON.stringify(ids) });
  },
  /** `checks.ifDuplicate`: the SKU is taken (the id is fresh). */
  insert(tx: Tx, product: Product, checks?: WriteChecks): void {
    tx.write(insert, { ...product }, checks);
  },
  /** Writes `product` over the row still at `expectedVersion`; `checks.ifUnchanged` fires when another update got there first. */
  update(tx: Tx, product: Product, expectedVersion: number, checks?: WriteChecks): void {
    tx.write(update, { ...product, expectedVersion }, checks);
  },
};
