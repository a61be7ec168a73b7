import type { SqliteDb } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import { BACKSTOP_FACTOR, checkpointInBackground } from "./background-checkpoints.ts";

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
  /** WAL pages after which the WAL is checkpointed (SQLite's default: 1000; 0: never). */
  walAutocheckpointPages?: number;
  /**
   * "background" (default): the process's checkpoint thread checkpoints the file, the commits on
   * this connection do not (ADR 0015). "inline": the commit that crosses the threshold does.
   */
  checkpoint?: "background" | "inline";
}

/** SQLite's own `wal_autocheckpoint` default. */
const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;

/** A driver's connection, before the checkpoint set-up. */
type DriverConnection = SqliteConnection & { readonly inTransaction: () => boolean };

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/**
 * Opens (creating if needed) a SQLite file in WAL mode with the driver of the running runtime:
 * `bun:sqlite` under Bun (production), `better-sqlite3` under Node (it does not load under Bun).
 * With `checkpoint: "background"` (the default) the WAL is checkpointed by a worker thread; `logger`
 * is told if that thread fails.
 * @example const conn = await openSqlite("./data/orders.db", { synchronous: "NORMAL" });
 */
export async function openSqlite(file: string, opts: SqliteOptions, logger?: Logger): Promise<SqliteConnection> {
  const conn = isBun ? await openBun(file) : await openBetter(file);
  // temp_store = MEMORY keeps statement journals in memory: each body of a group commit runs in a
  // savepoint, whose journal otherwise spills past 64 KiB to a file in /var/tmp — under load
  // ~7 MB/s of writes, more write calls than all the WAL files together. busy_timeout comes first:
  // switching to WAL reads the file, and another process's lock on it (a connection closing and
  // checkpointing, a backup) must be waited out, not fail the start. better-sqlite3 waits 5 s by
  // default; bun:sqlite does not wait at all.
  conn.exec(`PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = ${opts.synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;`);
  const pages = Math.trunc(opts.walAutocheckpointPages ?? DEFAULT_AUTOCHECKPOINT_PAGES);
  // 0 never checkpoints, in either mode.
  if ((opts.checkpoint ?? "background") === "inline" || pages === 0) {
    if (opts.walAutocheckpointPages !== undefined) conn.exec(`PRAGMA wal_autocheckpoint = ${pages}`);
    return conn;
  }
  return checkpointedInBackground(conn, pages, logger);
}

/** The files another owner holds (see `ownFiles`). */
export class FilesInUse extends Error {
  override readonly name = "FilesInUse";
  constructor(readonly files: readonly string[]) {
    super(
      `${files.join(", ")} ${files.length === 1 ? "is" : "are"} in use by another process (or another platform in this one): a SQLite file of this platform has one owner, as its relay, bus and caches rely on it. Stop that one first, or give this one another data dir`,
    );
  }
}

/**
 * Makes this process the one owner of `files` (SQLite databases it will open): holds an exclusive
 * lock on `<file>-owner` for each, until `release()` or the process ends — a kill -9 included, as
 * the operating system drops the locks of a dead process. Fails with `FilesInUse`, naming every
 * file already owned, by another process or by another owner in this one.
 * @example const release = await ownFiles(["./data/orders.db"]); … release();
 */
export async function ownFiles(files: readonly string[]): Promise<() => void> {
  const held: DriverConnection[] = [];
  const taken: string[] = [];
  const release = () => {
    for (const c of held.splice(0)) c.close();
  };
  try {
    for (const file of files) {
      const conn = isBun ? await openBun(`${file}-owner`) : await openBetter(`${file}-owner`);
      try {
        // No journal (nothing is written), not WAL: BEGIN EXCLUSIVE takes the exclusive lock at
        // once, exclusive locking mode keeps it; busy_timeout 0 answers at once when another has it.
        conn.exec("PRAGMA busy_timeout = 0; PRAGMA journal_mode = OFF; PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE");
        held.push(conn);
      } catch (err) {
        conn.close();
        if (!/locked|busy/i.test(String((err as { code?: unknown }).code ?? (err as Error).message))) throw err;
        taken.push(file);
      }
    }
  } catch (err) {
    release();
    throw err;
  }
  if (taken.length > 0) {
    release();
    throw new FilesInUse(taken);
  }
  return release;
}

/**
 * The connection with its checkpoints handed to the checkpoint thread: its own autocheckpoint
 * raised to the backstop, every write outside a transaction (a COMMIT, an autocommit statement)
 * signalled, the thread's connection closed before this one.
 */
function checkpointedInBackground(conn: DriverConnection, pages: number, logger: Logger | undefined): SqliteConnection {
  conn.exec(`PRAGMA wal_autocheckpoint = ${pages * BACKSTOP_FACTOR}`);
  const bg = checkpointInBackground({ file: conn.file, pages, logger, restoreInline: () => conn.exec(`PRAGMA wal_autocheckpoint = ${pages}`) });
  const wrote = () => {
    if (!conn.inTransaction()) bg.committed();
  };
  return {
    file: conn.file,
    db: conn.db,
    exec(sql) {
      conn.exec(sql);
      wrote();
    },
    prepare(sql) {
      const st = conn.prepare(sql);
      return {
        run(...p) {
          const r = st.run(...p);
          wrote();
          return r;
        },
        all: st.all,
        get: st.get,
      };
    },
    close() {
      bg.close();
      conn.close();
    },
  };
}

async function openBun(file: string): Promise<DriverConnection> {
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
    inTransaction: () => raw.inTransaction,
    close: () => raw.close(),
  };
}

async function openBetter(file: string): Promise<DriverConnection> {
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
    inTransaction: () => raw.inTransaction,
    close: () => raw.close(),
  };
}
