import { createHash } from "node:crypto";
import type { Migration } from "../module.ts";
import type { SqliteConnection } from "./sqlite.ts";

/**
 * The platform's own tables, created in every module's database before the module's migrations:
 * the transactional outbox and the consumer inbox live next to the business tables they must
 * commit with. Every index costs each order a B-tree write, so there are no time indexes:
 * published outbox rows are a prefix of `seq` (the relay publishes in order) and inbox keys are
 * UUIDv7 event ids, so both prune by age along their primary keys. For the same reason 0002
 * rebuilds the outbox without AUTOINCREMENT (a write to sqlite_sequence in every commit that
 * publishes) and without the index of unpublished rows (a write on insert and on each mark): the
 * relay finds its place by a binary search over `seq`, and pruning keeps the newest row, so
 * SQLite's MAX(seq) + 1 never hands out a seq again.
 */
export const platformSqliteMigrations: readonly Migration[] = [
  {
    id: "selaras:0001_outbox_inbox",
    sql: `
CREATE TABLE selaras_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  aggregate_id TEXT NOT NULL,
  type TEXT NOT NULL,
  payload BLOB NOT NULL,
  headers TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  published_at INTEGER
);
CREATE INDEX selaras_outbox_unpublished ON selaras_outbox (seq) WHERE published_at IS NULL;
CREATE TABLE selaras_inbox (
  consumer TEXT NOT NULL,
  event_id TEXT NOT NULL,
  processed_at INTEGER NOT NULL,
  PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
`,
  },
  {
    id: "selaras:0002_outbox_seq",
    sql: `
CREATE TABLE selaras_outbox_0002 (
  seq INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  aggregate_id TEXT NOT NULL,
  type TEXT NOT NULL,
  payload BLOB NOT NULL,
  headers TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  published_at INTEGER
);
INSERT INTO selaras_outbox_0002 (seq, event_id, aggregate_id, type, payload, headers, created_at, published_at)
  SELECT seq, event_id, aggregate_id, type, payload, headers, created_at, published_at FROM selaras_outbox ORDER BY seq;
DROP TABLE selaras_outbox;
ALTER TABLE selaras_outbox_0002 RENAME TO selaras_outbox;
`,
  },
];

/** Thrown when a database and the binary disagree about migrations; the process must not start. */
export class MigrationError extends Error {
  override readonly name = "MigrationError";
}

/** The checksum recorded for an applied migration (shared by the SQLite and Postgres migrators). */
export function checksum(sql: string): string {
  return createHash("sha256").update(sql).digest("hex").slice(0, 16);
}

/**
 * Applies the pending migrations of one module, each in its own transaction, tracked in the
 * module's own `selaras_migrations` table. Refuses to run when an applied migration was edited
 * or when the database holds a migration this binary does not know (a newer deploy ran).
 * @returns the ids applied now.
 */
export function migrateSqlite(conn: SqliteConnection, module: string, migrations: readonly Migration[]): string[] {
  conn.exec(`CREATE TABLE IF NOT EXISTS selaras_migrations (id TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const all = [...platformSqliteMigrations, ...[...migrations].sort((a, b) => a.id.localeCompare(b.id))];
  const known = new Map(all.map((m) => [m.id, m]));
  const applied = conn.prepare("SELECT id, checksum FROM selaras_migrations").all<{ id: string; checksum: string }>();
  for (const row of applied) {
    const m = known.get(row.id);
    if (!m) throw new MigrationError(`module ${module}: the database has migration ${row.id}, which this binary does not know (was it started by a newer version?)`);
    if (checksum(m.sql) !== row.checksum) throw new MigrationError(`module ${module}: migration ${row.id} was edited after it was applied; add a new migration instead`);
  }
  const done = new Set(applied.map((r) => r.id));
  const insert = conn.prepare("INSERT INTO selaras_migrations (id, checksum, applied_at) VALUES (?, ?, ?)");
  const now: string[] = [];
  for (const m of all) {
    if (done.has(m.id)) continue;
    conn.exec("BEGIN IMMEDIATE");
    try {
      conn.exec(m.sql);
      insert.run(m.id, checksum(m.sql), Date.now());
      conn.exec("COMMIT");
    } catch (err) {
      conn.exec("ROLLBACK");
      throw new MigrationError(`module ${module}: migration ${m.id} failed: ${(err as Error).message}`);
    }
    now.push(m.id);
  }
  return now;
}
