import type { SqliteDb } from "../module.ts";

/** The storage dialects a module runs on: one SQLite file per module, or one Postgres schema per module. */
export type Dialect = "sqlite" | "postgres";

/**
 * A module's drizzle tables for each dialect. Drizzle tables are dialect-specific, so a module
 * keeps a Postgres twin of its SQLite tables (same property and column names). Statements are
 * written once against the SQLite twin's types and built for each dialect from its own tables.
 */
export interface DialectTables<T> {
  readonly sqlite: T;
  readonly postgres: unknown;
}

/** Builds one statement for `dialect` from that dialect's tables (typed as the SQLite twin). */
export type StatementBuilder<T, Q> = (db: SqliteDb, t: T, dialect: Dialect) => Q;

/**
 * A read, compiled once per connection and run with named placeholder values
 * (`sql.placeholder("id")`). Run it with `storage.read(query, values)`.
 */
export interface ReadQuery<Row> {
  readonly kind: "read";
  readonly tables: DialectTables<unknown>;
  readonly build: StatementBuilder<unknown, unknown>;
  /** Phantom: the row type. */
  readonly _row?: Row;
}

/** A write, compiled once per connection. Run it inside a transaction with `tx.write(statement, values)`. */
export interface WriteStatement {
  readonly kind: "write";
  readonly tables: DialectTables<unknown>;
  readonly build: StatementBuilder<unknown, unknown>;
}

/**
 * Declares a read. The builder returns a drizzle select without `.prepare()`; the platform
 * prepares it per connection (drizzle would rebuild the SQL text on every call otherwise).
 * @example
 * const byId = readQuery<Product, typeof tables.sqlite>(tables, (db, t) => db.select().from(t.products).where(eq(t.products.id, sql.placeholder("id"))));
 * const [product] = await storage.read(byId, { id });
 */
export function readQuery<Row, T>(tables: DialectTables<T>, build: StatementBuilder<T, unknown>): ReadQuery<Row> {
  return { kind: "read", tables, build: build as StatementBuilder<unknown, unknown> };
}

/**
 * Declares a write (insert, update, delete; `ON CONFLICT` allowed). Like `readQuery`, written
 * once against the SQLite twin's types.
 * @example
 * const insert = writeStatement(tables, (db, t) => db.insert(t.products).values({ id: sql.placeholder("id"), ... }));
 * tx.write(insert, product, { ifDuplicate: () => skuTaken(product.sku) });
 */
export function writeStatement<T>(tables: DialectTables<T>, build: StatementBuilder<T, unknown>): WriteStatement {
  return { kind: "write", tables, build: build as StatementBuilder<unknown, unknown> };
}

/** Named placeholder values of one execution. */
export type StatementValues = Record<string, unknown>;

/**
 * What a write expects. A transaction body cannot look at a write's result (on Postgres the
 * writes of a body run after it returned, pipelined with other bodies), so a body states its
 * expectations and the platform turns a failed one into the body's error — rolling back only that
 * body, whichever dialect runs.
 */
export interface WriteChecks {
  /** The write changed no row (an `ON CONFLICT DO NOTHING` that hit, an expected-version `UPDATE` that lost): fail the body with this error. */
  readonly ifUnchanged?: () => Error;
  /** The write hit a unique or primary-key constraint: fail the body with this error instead of the driver's. */
  readonly ifDuplicate?: () => Error;
}

/**
 * A write found the data changed since it was read (an expected-version `UPDATE` that matched no
 * row, an append at a version someone else took). Throw it from a check
 * (`ifUnchanged: () => new WriteConflict(...)`): event handlers are then loaded and run again;
 * a command decides itself whether to retry.
 */
export class WriteConflict extends Error {
  override readonly name = "WriteConflict";
}

/** Per-connection cache of compiled statements. */
export class StatementCache<C> {
  readonly #compiled = new WeakMap<object, C>();

  constructor(private readonly compile: (s: ReadQuery<unknown> | WriteStatement) => C) {}

  get(s: ReadQuery<unknown> | WriteStatement): C {
    let c = this.#compiled.get(s);
    if (c === undefined) this.#compiled.set(s, (c = this.compile(s)));
    return c;
  }
}

/** True for a unique or primary-key violation from bun:sqlite, better-sqlite3 or Postgres. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "23505";
}

/**
 * `readQuery` and `writeStatement` bound to one module's tables, so the table types are inferred.
 * @example
 * const q = statementsFor({ sqlite, postgres });
 * const byId = q.read<Product>((db, t) => db.select().from(t.products).where(eq(t.products.id, sql.placeholder("id"))));
 */
export function statementsFor<T>(tables: DialectTables<T>): {
  read<Row>(build: StatementBuilder<T, unknown>): ReadQuery<Row>;
  write(build: StatementBuilder<T, unknown>): WriteStatement;
} {
  return {
    read: <Row>(build: StatementBuilder<T, unknown>) => readQuery<Row, T>(tables, build),
    write: (build) => writeStatement(tables, build),
  };
}
