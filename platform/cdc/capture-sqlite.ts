import { createHash, randomUUID } from "node:crypto";
import { basename } from "node:path";
import type { Bus } from "../bus/types.ts";
import { backoffMs, Doorbell } from "../doorbell.ts";
import type { Logger } from "../observability/logger.ts";
import type { SqliteModuleStorage } from "../storage/module-storage.ts";
import type { SqliteConnection } from "../storage/sqlite.ts";
import { changeEnvelope, stableEventId, type CapturedChange } from "./capture-event.ts";
import type { ChangeOp, Row } from "./change-event.ts";

/*
 * Change capture on SQLite, which has no WAL to decode: AFTER INSERT/UPDATE/DELETE triggers on
 * each captured table write the row change into `selaras_cdc_changes` in the same file — so in
 * the same transaction as the module's write: committed together, or not at all. A poller then
 * publishes the rows in `seq` order and deletes them, like the outbox relay. The triggers are
 * the platform's, generated from the table's columns at start; the owning module's code and
 * migrations know nothing of them.
 */

const SETUP = `
CREATE TABLE IF NOT EXISTS selaras_cdc_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tbl TEXT NOT NULL,
  op TEXT NOT NULL,
  pk TEXT NOT NULL,
  before TEXT,
  after TEXT,
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS selaras_cdc_tables (tbl TEXT PRIMARY KEY, snapshot_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS selaras_cdc_state (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL);
`;

/** Epoch milliseconds in SQL (julianday keeps milliseconds on every SQLite version we run). */
const NOW_MS = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)";
const TRIGGER_PREFIX = "selaras_cdc_";

interface ChangeRow {
  seq: number;
  tbl: string;
  op: string;
  pk: string;
  before: string | null;
  after: string | null;
  at: number;
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** The SQL of one table's capture: the three triggers and the snapshot insert. */
export function captureSql(table: string, columns: ReadonlyArray<{ name: string; pk: number }>): { triggers: Map<string, string>; snapshot: string } {
  const key = columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
  const col = (ref: string, name: string) => (ref ? `${ref}.${ident(name)}` : ident(name));
  // A BLOB cannot go into JSON (json_object would fail the module's write): it goes as hex.
  const row = (ref: string) =>
    `json_object(${columns.map((c) => `${literal(c.name)}, CASE WHEN typeof(${col(ref, c.name)}) = 'blob' THEN hex(${col(ref, c.name)}) ELSE ${col(ref, c.name)} END`).join(", ")})`;
  const pk = (ref: string) =>
    key.length === 0 ? literal(table) : key.length === 1 ? `CAST(${col(ref, key[0]!)} AS TEXT)` : `json_array(${key.map((k) => col(ref, k)).join(", ")})`;
  const insert = (op: string, keyRef: string, before: string, after: string) =>
    `INSERT INTO selaras_cdc_changes (tbl, op, pk, before, after, at) VALUES (${literal(table)}, '${op}', ${pk(keyRef)}, ${before}, ${after}, ${NOW_MS});`;
  const bodies = {
    c: `AFTER INSERT ON ${ident(table)} BEGIN ${insert("c", "NEW", "NULL", row("NEW"))} END`,
    u: `AFTER UPDATE ON ${ident(table)} BEGIN ${insert("u", "NEW", row("OLD"), row("NEW"))} END`,
    d: `AFTER DELETE ON ${ident(table)} BEGIN ${insert("d", "OLD", row("OLD"), "NULL")} END`,
  };
  // The name carries a hash of the column list: a migration that adds a column makes the next
  // start replace the triggers instead of keeping ones that miss it.
  const hash = createHash("sha256").update(Object.values(bodies).join("\n")).digest("hex").slice(0, 10);
  const triggers = new Map(Object.entries(bodies).map(([op, body]) => {
    const name = `${TRIGGER_PREFIX}${table}_${hash}_${op}`;
    return [name, `CREATE TRIGGER ${ident(name)} ${body}`];
  }));
  const snapshot = `INSERT INTO selaras_cdc_changes (tbl, op, pk, before, after, at) SELECT ${literal(table)}, 'r', ${pk("")}, NULL, ${row("")}, ${NOW_MS} FROM ${ident(table)} ORDER BY rowid`;
  return { triggers, snapshot };
}

/**
 * Drops the capture triggers of tables in this file that are no longer captured, and forgets
 * their snapshot (captured again later, a table is snapshotted again). Otherwise the triggers
 * would go on filling the change table with nobody publishing it. Change rows already there
 * stay; a capture running on the file publishes them.
 */
export function retireSqliteCaptures(conn: SqliteConnection, keep: readonly string[], logger: Logger): void {
  const stale = conn
    .prepare("SELECT name, tbl_name AS tbl FROM sqlite_master WHERE type = 'trigger' AND substr(name, 1, ?) = ?")
    .all<{ name: string; tbl: string }>(TRIGGER_PREFIX.length, TRIGGER_PREFIX)
    .filter((t) => !keep.includes(t.tbl));
  if (stale.length === 0) return;
  conn.exec("BEGIN IMMEDIATE");
  try {
    for (const t of stale) conn.exec(`DROP TRIGGER ${ident(t.name)}`);
    for (const tbl of new Set(stale.map((t) => t.tbl))) conn.prepare("DELETE FROM selaras_cdc_tables WHERE tbl = ?").run(tbl);
    conn.exec("COMMIT");
  } catch (err) {
    conn.exec("ROLLBACK");
    throw err;
  }
  logger.info("cdc triggers removed: the tables are no longer captured", { tables: [...new Set(stale.map((t) => t.tbl))] });
}

/** Options of one module's SQLite capture. */
export interface SqliteCaptureOptions {
  readonly module: string;
  readonly storage: SqliteModuleStorage;
  readonly tables: readonly string[];
  readonly bus: Bus;
  readonly logger: Logger;
  /** Change rows published per bus call. */
  readonly batchSize: number;
  /** Told how many events each publish put on the bus. */
  readonly onPublished?: (n: number) => void;
}

/**
 * Captures one module's tables on SQLite: triggers into a change table (`setup`), and a poller
 * that publishes the changes in order and deletes them (`start`), woken by the storage's commits.
 * At least once: a crash between publishing and deleting publishes the same ids again (the bus
 * drops them); nothing committed is lost, since the change row commits with the write.
 */
export class SqliteCapture {
  readonly #o: SqliteCaptureOptions;
  readonly #conn: SqliteConnection;
  readonly #db: string;
  #epoch = "";
  #running = false;
  #loop: Promise<void> | undefined;
  /** Rung by every commit of the module's storage (and by stop, drain); cuts the sleeps short. */
  readonly #bell = new Doorbell();
  #unlisten: (() => void) | undefined;
  #idle: Array<() => void> = [];

  constructor(opts: SqliteCaptureOptions) {
    this.#o = opts;
    this.#conn = opts.storage.conn;
    this.#db = basename(this.#conn.file);
  }

  /**
   * Creates the change table and, per table, the triggers (replacing ones generated for other
   * columns) and — the first time a table is captured — its snapshot (`r` rows of everything it
   * holds), all in one transaction: a change is either in the snapshot or caught by a trigger.
   * Runs at start, before the modules write.
   */
  setup(): void {
    const conn = this.#conn;
    conn.exec("BEGIN IMMEDIATE");
    try {
      conn.exec(SETUP);
      conn.prepare("INSERT OR IGNORE INTO selaras_cdc_state (id, epoch) VALUES (1, ?)").run(randomUUID());
      this.#epoch = conn.prepare("SELECT epoch FROM selaras_cdc_state WHERE id = 1").get<{ epoch: string }>()!.epoch;
      for (const table of this.#o.tables) this.#setupTable(table);
      conn.exec("COMMIT");
    } catch (err) {
      conn.exec("ROLLBACK");
      throw err;
    }
  }

  #setupTable(table: string): void {
    const conn = this.#conn;
    const columns = conn.prepare(`PRAGMA table_info(${ident(table)})`).all<{ name: string; pk: number }>();
    if (columns.length === 0) throw new Error(`module ${this.#o.module}: cannot capture table ${table}: it does not exist`);
    const { triggers, snapshot } = captureSql(table, columns);
    const existing = conn
      .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND substr(name, 1, ?) = ?")
      .all<{ name: string }>(table, TRIGGER_PREFIX.length, TRIGGER_PREFIX)
      .map((r) => r.name);
    const current = existing.length === triggers.size && existing.every((n) => triggers.has(n));
    if (!current) {
      for (const name of existing) conn.exec(`DROP TRIGGER ${ident(name)}`);
      for (const ddl of triggers.values()) conn.exec(ddl);
      this.#o.logger.info("cdc triggers installed", { module: this.#o.module, table, replaced: existing.length > 0 });
    }
    const known = conn.prepare("SELECT 1 AS x FROM selaras_cdc_tables WHERE tbl = ?").get(table);
    if (!known) {
      conn.exec(snapshot);
      conn.prepare("INSERT INTO selaras_cdc_tables (tbl, snapshot_at) VALUES (?, ?)").run(table, Date.now());
    }
  }

  /** The module whose tables this captures. */
  get module(): string {
    return this.#o.module;
  }

  /** Starts publishing (in the background). */
  start(): void {
    this.#running = true;
    this.#unlisten = this.#o.storage.afterCommit(() => this.#bell.ring());
    this.#loop = this.#run();
  }

  /** Change rows committed and not yet published. */
  pending(): number {
    return this.#conn.prepare("SELECT COUNT(*) AS n FROM selaras_cdc_changes").get<{ n: number }>()?.n ?? 0;
  }

  /** Resolves once every change committed so far is published. */
  async drained(): Promise<void> {
    if (!this.#running || this.pending() === 0) return;
    return new Promise((r) => {
      this.#idle.push(r);
      this.#bell.ring();
    });
  }

  /** Publishes what is left (bounded by `timeoutMs`; the rest waits in the change table for the next start), then stops. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (!this.#running) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flushed = await Promise.race([this.drained().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(timer);
    if (!flushed) this.#o.logger.warn("cdc stopped before every change was published; the rest is published by the next start", { module: this.#o.module, pending: this.pending() });
    this.#running = false;
    this.#unlisten?.();
    this.#bell.ring();
    await this.#loop;
    for (const r of this.#idle.splice(0)) r();
  }


  async #run(): Promise<void> {
    const { module, logger, batchSize } = this.#o;
    const read = this.#conn.prepare("SELECT seq, tbl, op, pk, before, after, at FROM selaras_cdc_changes ORDER BY seq LIMIT ?");
    let failures = 0;
    while (this.#running) {
      this.#bell.rung = false;
      let rows: ChangeRow[];
      try {
        rows = read.all<ChangeRow>(batchSize);
        if (rows.length === 0) {
          for (const r of this.#idle.splice(0)) r();
          // A slow tick covers writes of another connection to the file (no commit hook sees them).
          if (!this.#bell.rung) await this.#bell.sleep(1000);
          continue;
        }
        await this.#o.bus.publish(rows.map((r) => changeEnvelope(this.#change(r))));
        const last = rows[rows.length - 1]!.seq;
        await this.#o.storage.transactInternal(() => this.#conn.prepare("DELETE FROM selaras_cdc_changes WHERE seq <= ?").run(last));
        this.#o.onPublished?.(rows.length);
        failures = 0;
      } catch (err) {
        if (!this.#running) break;
        failures++;
        const delay = backoffMs(failures);
        logger.warn("cdc could not publish changes; retrying", { module, err, retryInMs: delay });
        await this.#bell.sleep(delay);
      }
    }
  }

  #change(r: ChangeRow): CapturedChange {
    const parse = (json: string | null) => (json === null ? null : (JSON.parse(json) as Row));
    return {
      id: stableEventId(r.at, this.#o.module, this.#epoch, String(r.seq)),
      op: r.op as ChangeOp,
      before: parse(r.before),
      after: parse(r.after),
      key: r.pk,
      source: { connector: "sqlite", db: this.#db, schema: "main", table: r.tbl, module: this.#o.module, lsn: r.seq, commitLsn: r.seq, txId: 0, tsMs: r.at, snapshot: r.op === "r" },
    };
  }
}
