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
  const conn = await openSqlite(opts.file, opts.sqlite);
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
 * Foreign keys between read-model tables are checked at COMMIT (deferred), so the order of the
 * tables does not matter. `exec` rather than prepared statements: none may outlive the DETACH.
 */
function swapTables(conn: SqliteConnection, file: string, tables: readonly string[], record: RebuildRecord): void {
  conn.exec(`ATTACH DATABASE '${file.replace(/'/g, "''")}' AS ${ATTACHED}`);
  try {
    const columns = tables.map((t) => {
      const live = conn.prepare("SELECT name FROM pragma_table_info(?, 'main') ORDER BY cid").all<{ name: string }>(t).map((c) => c.name);
      const copy = conn.prepare(`SELECT name FROM pragma_table_info(?, '${ATTACHED}') ORDER BY cid`).all<{ name: string }>(t).map((c) => c.name);
      if (live.length === 0 || live.join() !== copy.join()) throw new Error(`read-model table ${t}: the live table and the rebuilt one differ (${live.join(", ") || "missing"} / ${copy.join(", ") || "missing"})`);
      return live.map(quoteIdent).join(", ");
    });
    conn.exec("BEGIN IMMEDIATE");
    try {
      conn.exec("PRAGMA defer_foreign_keys = ON");
      tables.forEach((t, i) => {
        conn.exec(`DELETE FROM main.${quoteIdent(t)}`);
        conn.exec(`INSERT INTO main.${quoteIdent(t)} (${columns[i]}) SELECT ${columns[i]} FROM ${ATTACHED}.${quoteIdent(t)}`);
      });
      conn.exec(recordTableSql("sqlite"));
      conn.prepare(RECORD_UPSERT).run(...recordValues(record));
      conn.exec("COMMIT");
    } catch (err) {
      conn.exec("ROLLBACK");
      throw err;
    }
  } finally {
    conn.exec(`DETACH DATABASE ${ATTACHED}`);
  }
}
