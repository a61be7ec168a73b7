import type { SqliteDb } from "../module.ts";

/** A prepared statement, the same shape on bun:sqlite and better-sqlite3. */
export interface SqlStatement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  all<R = Record<string, unknown>>(...params: unknown[]): R[];
  /** The first row, or undefined (never null, whichever driver). */
  get<R = Record<string, unknown>>(...params: unknown[]): R | undefined;
}

/** One open SQLite file: raw statements for the platform's hot paths, drizzle for module code. */
export interface SqliteConnection {
  readonly file: string;
  readonly db: SqliteDb;
  exec(sql: string): void;
  prepare(sql: string): SqlStatement;
  close(): void;
}

export interface SqliteOptions {
  /** NORMAL: in WAL mode durable across process crashes; FULL: also across power loss. */
  synchronous: "NORMAL" | "FULL";
  /** WAL pages after which a commit checkpoints (SQLite's default: 1000). */
  walAutocheckpointPages?: number;
}

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/**
 * Opens (creating if needed) a SQLite file in WAL mode with the driver of the running runtime:
 * `bun:sqlite` under Bun (production), `better-sqlite3` under Node (it does not load under Bun).
 * @example const conn = await openSqlite("./data/orders.db", { synchronous: "NORMAL" });
 */
export async function openSqlite(file: string, opts: SqliteOptions): Promise<SqliteConnection> {
  const conn = isBun ? await openBun(file) : await openBetter(file);
  conn.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${opts.synchronous}; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;`);
  if (opts.walAutocheckpointPages !== undefined) conn.exec(`PRAGMA wal_autocheckpoint = ${Math.trunc(opts.walAutocheckpointPages)}`);
  return conn;
}

async function openBun(file: string): Promise<SqliteConnection> {
  // Specifiers in variables keep bundlers (bun build --compile) from pulling the other driver in.
  const { Database } = (await import("bun:sqlite")) as typeof import("bun:sqlite");
  const { drizzle } = (await import("drizzle-orm/bun-sqlite")) as typeof import("drizzle-orm/bun-sqlite");
  const raw = new Database(file, { create: true, strict: true });
  // drizzle prepares every query anew; compiling the SQL was the largest cost of a write (~18% of
  // an order). `query()` is bun:sqlite's cached prepare: one compiled statement per SQL text.
  const cached = new Proxy(raw, { get: (t, p) => (p === "prepare" ? (sql: string) => t.query(sql) : Reflect.get(t, p, t)) });
  return {
    file,
    db: drizzle({ client: cached }) as unknown as SqliteDb,
    exec: (sql) => raw.exec(sql),
    prepare(sql) {
      const st = raw.query(sql);
      return {
        run: (...p) => st.run(...(p as never[])),
        all: (...p) => st.all(...(p as never[])) as never,
        get: (...p) => (st.get(...(p as never[])) ?? undefined) as never,
      };
    },
    close: () => raw.close(),
  };
}

async function openBetter(file: string): Promise<SqliteConnection> {
  const driver = "better-sqlite3";
  const mod = (await import(driver)) as { default: typeof import("better-sqlite3") };
  const Database = mod.default;
  const { drizzle } = (await import("drizzle-orm/better-sqlite3")) as typeof import("drizzle-orm/better-sqlite3");
  const raw = new Database(file);
  // Same statement cache as under Bun (see openBun), bounded because better-sqlite3 has none.
  const cache = new Map<string, import("better-sqlite3").Statement<unknown[]>>();
  const prepareCached = (sql: string) => {
    let st = cache.get(sql);
    if (!st) {
      if (cache.size >= 1000) cache.clear();
      cache.set(sql, (st = raw.prepare(sql)));
    }
    return st;
  };
  const cached = new Proxy(raw, { get: (t, p) => (p === "prepare" ? prepareCached : Reflect.get(t, p, t)) });
  return {
    file,
    db: drizzle({ client: cached }) as unknown as SqliteDb,
    exec: (sql) => void raw.exec(sql),
    prepare(sql) {
      const st = prepareCached(sql);
      const returnsRows = st.reader;
      return {
        run: (...p) => st.run(...p),
        all: (...p) => (returnsRows ? st.all(...p) : (st.run(...p), [])) as never,
        get: (...p) => (returnsRows ? st.get(...p) : undefined) as never,
      };
    },
    close: () => raw.close(),
  };
}
