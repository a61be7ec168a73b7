import type { SqliteDb } from "../module.ts";

/**
 * Memoises a drizzle prepared query per database connection. drizzle rebuilds the SQL text of a
 * query builder on every call — measured at more than half the CPU of placing an order — while a
 * prepared query only binds values. Build queries with `sql.placeholder(...)` and `.prepare()`.
 *
 * The cache is keyed by the connection (`storage.db` and the transaction's `tx.db` are two keys),
 * so platforms side by side never share statements.
 *
 * @example
 * const byId = preparedQuery((db) => db.select().from(products).where(eq(products.id, sql.placeholder("id"))).prepare());
 * byId(tx.db).get({ id });
 */
export function preparedQuery<Q>(build: (db: SqliteDb) => Q): (db: SqliteDb) => Q {
  const cache = new WeakMap<SqliteDb, Q>();
  return (db) => {
    // Touching the handle runs the transaction guard of `tx.db` (it throws once the body ended).
    Reflect.get(db, "$client");
    let q = cache.get(db);
    if (q === undefined) cache.set(db, (q = build(db)));
    return q;
  };
}
