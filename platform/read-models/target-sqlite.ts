import { rmSync } from "node:fs";
import type { Tracer } from "../observability/trace.ts";
import { migrateSqlite } from "../storage/migrate.ts";
import { SqliteModuleStorage, type PlatformStorage } from "../storage/module-storage.ts";
import { openSqlite, type SqliteConnection, type SqliteOptions } from "../storage/sqlite.ts";
import type { Migration } from "../module.ts";
import { RECORD_UPSERT, recordTableSql, recordValues, type RebuildRecord } from "./record.ts";
import { quoteIdent, type RebuildTarget } from "./target.ts";

const ATTACHED = "selaras_rebuild";

function removeFiles(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) rmSync(f, { force: true });
}

/**
 * A fresh SQLite file for the copy (an old one at that path is replaced), migrated like the
 * module's own. The swap attaches it to the live connection and, in one `BEGIN IMMEDIATE`
 * transaction, replaces each table's rows: the live file is the one the process keeps serving
 * from, and SQLite's readers see either state.
 */
export async function openSqliteTarget(opts: { module: string; file: string; migrations: readonly Migration[]; sqlite: SqliteOptions; tracer: Tracer }): Promise<RebuildTarget> {
  removeFiles(opts.file);
  // Inline checkpoints: a checkpoint thread's connection would keep the journal mode below from
  // leaving WAL (that needs the only connection), and there is no WAL to checkpoint after it.
  const conn = await openSqlite(opts.file, { ...opts.sqlite, checkpoint: "inline" });
  // A scratch file until the swap (or kept for inspection): nothing needs its writes to survive a
  // crash — an interrupted rebuild starts over from the retained events. Each row is written once
  // (no WAL to checkpoint) and no commit waits for the disk; rollbacks still work (the journal
  // lives in memory).
  conn.exec("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF");
  try {
    migrateSqlite(conn, opts.module, opts.migrations);
  } catch (err) {
    conn.close();
    removeFiles(opts.file);
    throw err;
  }
  const storage = new SqliteModuleStorage(opts.module, conn, opts.tracer);
  return {
    storage,
    location: opts.file,
    async swapInto(live, tables, record) {
      // Closing the last connection checkpoints the WAL: the file alone holds the copy.
      await storage.close();
      try {
        swapTables(liveConnection(live), opts.file, tables, record);
      } finally {
        removeFiles(opts.file);
      }
    },
    async keep(record) {
      conn.exec(recordTableSql("sqlite"));
      conn.prepare(RECORD_UPSERT).run(...recordValues(record));
      await storage.close();
    },
    async discard() {
      await storage.close();
      removeFiles(opts.file);
    },
  };
}

function liveConnection(live: PlatformStorage): SqliteConnection {
  if (!(live instanceof SqliteModuleStorage)) throw new Error(`module ${live.module}: the live storage is not SQLite`);
  return live.conn;
}

/**
 * One synchronous step on the live connection — nothing else of this process runs in between,
 * and the module's group commit never holds a transaction open across turns of the event loop.
 * `exec` rather than prepared statements where possible: none may outlive the DETACH.
 */
function swapTables(conn: SqliteConnection, file: string, tables: readonly string[], record: RebuildRecord): void {
  conn.exec(`ATTACH DATABASE '${file.replace(/'/g, "''")}' AS ${ATTACHED}`);
  // Foreign keys off for the swap (a pragma that only takes effect outside a transaction): the
  // copy was built with them enforced, so its rows are consistent among themselves, and nothing
  // else runs on this connection until they are back on. Without enforcement SQLite empties a
  // table at once and copies `SELECT *` record by record with its index entries (the transfer
  // optimization) instead of inserting row by row.
  const foreignKeys = conn.prepare("PRAGMA foreign_keys").get<{ foreign_keys: number }>()?.foreign_keys === 1;
  if (foreignKeys) conn.exec("PRAGMA foreign_keys = OFF");
  try {
    for (const t of tables) {
      const live = conn.prepare("SELECT name FROM pragma_table_info(?, 'main') ORDER BY cid").all<{ name: string }>(t).map((c) => c.name);
      const copy = conn.prepare(`SELECT name FROM pragma_table_info(?, '${ATTACHED}') ORDER BY cid`).all<{ name: string }>(t).map((c) => c.name);
      if (live.length === 0 || live.join() !== copy.join()) throw new Error(`read-model table ${t}: the live table and the rebuilt one differ (${live.join(", ") || "missing"} / ${copy.join(", ") || "missing"})`);
    }
    conn.exec("BEGIN IMMEDIATE");
    try {
      for (const t of tables) {
        conn.exec(`DELETE FROM main.${quoteIdent(t)}`);
        // Same columns in the same order (checked above).
        conn.exec(`INSERT INTO main.${quoteIdent(t)} SELECT * FROM ${ATTACHED}.${quoteIdent(t)}`);
      }
      // A foreign key between a swapped table and one that is not: the copy alone cannot vouch
      // for it, so it is checked here, as enforcement would have (violations roll the swap back).
      if (foreignKeys && crossesSwap(conn, tables)) {
        const violations = conn.prepare("PRAGMA main.foreign_key_check").all<{ table: string; parent: string }>();
        if (violations.length > 0) throw new Error(`the rebuilt read model breaks ${violations.length} foreign key(s), e.g. ${violations[0]!.table} -> ${violations[0]!.parent}; the live one is unchanged`);
      }
      conn.exec(recordTableSql("sqlite"));
      conn.prepare(RECORD_UPSERT).run(...recordValues(record));
      conn.exec("COMMIT");
    } catch (err) {
      conn.exec("ROLLBACK");
      throw err;
    }
  } finally {
    if (foreignKeys) conn.exec("PRAGMA foreign_keys = ON");
    conn.exec(`DETACH DATABASE ${ATTACHED}`);
  }
}

/** Whether any foreign key of the live database links a table of `tables` with one outside it. */
function crossesSwap(conn: SqliteConnection, tables: readonly string[]): boolean {
  const swapped = new Set(tables);
  const all = conn.prepare("SELECT name FROM main.sqlite_master WHERE type = 'table'").all<{ name: string }>();
  return all.some(({ name }) =>
    conn
      .prepare("SELECT \"table\" AS parent FROM pragma_foreign_key_list(?, 'main')")
      .all<{ parent: string }>(name)
      .some((fk) => swapped.has(name) !== swapped.has(fk.parent)),
  );
}
