import { join } from "node:path";
import { describeError, type Logger } from "../observability/logger.ts";
import { openSqlite, type SqliteConnection, type SqliteOptions, type SqlStatement } from "../storage/sqlite.ts";
import { failedDelivery, type Bus, type BusPosition, type BusSubscription, type DeadLetter, type Delivery, type DeliveryResult, type EventEnvelope, type RetainedBatch, type RetainedLog, type SubscribeOptions } from "./types.ts";

/** Settings of the embedded bus (from the `bus` config section). */
export interface EmbeddedBusOptions {
  dataDir: string;
  sqlite: SqliteOptions;
  maxDeliver: number;
  backoffMs: readonly number[];
  batchSize: number;
  logger: Logger;
}

interface EventRow {
  seq: number;
  event_id: string;
  type: string;
  source: string;
  aggregate_id: string;
  payload: Uint8Array;
  headers: string;
  occurred_at: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS bus_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  source TEXT NOT NULL,
  aggregate_id TEXT NOT NULL,
  payload BLOB NOT NULL,
  headers TEXT NOT NULL,
  occurred_at INTEGER NOT NULL,
  appended_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bus_dead_letters (
  consumer TEXT NOT NULL, seq INTEGER NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, dead_at INTEGER NOT NULL,
  PRIMARY KEY (consumer, seq)
);
CREATE TABLE IF NOT EXISTS bus_redrives (consumer TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (consumer, seq));
-- Per event type, the highest seq pruning deleted: a rebuild from the log would miss those events.
CREATE TABLE IF NOT EXISTS bus_pruned (type TEXT PRIMARY KEY, through_seq INTEGER NOT NULL);
`;

/** The embedded bus's SQLite file. */
export const busFile = (dataDir: string): string => join(dataDir, "bus.db");

/** The embedded log's one stream, as named in a `BusPosition`. */
export const LOG_STREAM = "log";

function toDelivery(row: EventRow, attempt: number): Delivery {
  return {
    seq: row.seq,
    attempt,
    envelope: {
      id: row.event_id,
      type: row.type,
      source: row.source,
      aggregateId: row.aggregate_id,
      payload: row.payload,
      headers: JSON.parse(row.headers) as Record<string, string>,
      occurredAt: row.occurred_at,
    },
  };
}

/**
 * The single-process bus: an append-only event log in `<dataDir>/bus.db` with one durable cursor
 * per consumer. Durable (a restart resumes at each cursor), ordered (one log, consumed in
 * order), and retained for replay. Failed deliveries are retried with backoff, then
 * dead-lettered; dead letters can be re-driven.
 *
 * @example const bus = await openEmbeddedBus({ dataDir: "./data", ... });
 */
export async function openEmbeddedBus(opts: EmbeddedBusOptions): Promise<EmbeddedBus> {
  const conn = await openSqlite(busFile(opts.dataDir), opts.sqlite, opts.logger);
  conn.exec(SCHEMA);
  return new EmbeddedBus(conn, opts);
}

export class EmbeddedBus implements Bus {
  readonly kind = "embedded";
  readonly #subs = new Set<EmbeddedSubscription>();
  readonly #insert: SqlStatement;
  #closed = false;
  #fileClosed = false;
  /** Highest seq in the log; only this process appends, so memory knows it exactly. */
  #head: number;
  /** Events a read model is rebuilt from, never pruned. */
  readonly retained: RetainedLog = new EmbeddedRetainedLog(this);

  constructor(
    readonly conn: SqliteConnection,
    readonly opts: EmbeddedBusOptions,
  ) {
    this.#insert = conn.prepare(
      "INSERT OR IGNORE INTO bus_events (event_id, type, source, aggregate_id, payload, headers, occurred_at, appended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.#head = conn.prepare("SELECT COALESCE(MAX(seq), 0) AS s FROM bus_events").get<{ s: number }>()?.s ?? 0;
  }

  /** True once the log file is closed (after every subscription stopped and saved its cursor). */
  get fileClosed(): boolean {
    return this.#fileClosed;
  }

  /** Highest seq in the log (0 when empty). */
  get head(): number {
    return this.#head;
  }

  async publish(events: readonly EventEnvelope[]): Promise<void> {
    if (this.#closed) throw new Error("bus is closed");
    if (events.length === 0) return;
    const now = Date.now();
    const before = this.#head;
    const appended: EventRow[] = [];
    this.conn.exec("BEGIN IMMEDIATE");
    try {
      for (const e of events) {
        const headers = JSON.stringify(e.headers);
        const r = this.#insert.run(e.id, e.type, e.source, e.aggregateId, e.payload, headers, e.occurredAt, now);
        // changes = 0: an id the log already holds (a relay retry after a crash) — deduplicated.
        if (r.changes === 1) {
          appended.push({ seq: Number(r.lastInsertRowid), event_id: e.id, type: e.type, source: e.source, aggregate_id: e.aggregateId, payload: e.payload, headers, occurred_at: e.occurredAt });
        }
      }
      this.conn.exec("COMMIT");
    } catch (err) {
      this.conn.exec("ROLLBACK");
      throw err;
    }
    if (appended.length === 0) return;
    this.#head = appended[appended.length - 1]!.seq;
    for (const s of this.#subs) s.offer(appended, before, this.#head);
  }

  subscribe(opts: SubscribeOptions): BusSubscription {
    if ([...this.#subs].some((s) => s.consumer === opts.consumer)) throw new Error(`consumer ${opts.consumer} is subscribed twice`);
    const sub = new EmbeddedSubscription(this, opts);
    this.#subs.add(sub);
    sub.start();
    return {
      stop: async () => {
        this.#subs.delete(sub);
        await sub.stop();
      },
      pause: () => sub.pause(),
      resume: () => sub.resume(),
      position: async () => ({ [LOG_STREAM]: sub.cursor }),
    };
  }

  async deadLetters(consumer?: string): Promise<DeadLetter[]> {
    const rows = this.conn
      .prepare(
        `SELECT d.consumer, d.error, d.attempts, d.dead_at, e.* FROM bus_dead_letters d JOIN bus_events e ON e.seq = d.seq
         WHERE (? IS NULL OR d.consumer = ?) ORDER BY d.dead_at, d.seq`,
      )
      .all<EventRow & { consumer: string; error: string; attempts: number; dead_at: number }>(consumer ?? null, consumer ?? null);
    return rows.map((r) => ({ consumer: r.consumer, seq: r.seq, envelope: toDelivery(r, 0).envelope, error: r.error, attempts: r.attempts, deadAt: r.dead_at }));
  }

  async redrive(consumer: string, seq?: number): Promise<number> {
    this.conn.exec("BEGIN IMMEDIATE");
    let n = 0;
    try {
      this.conn.prepare("INSERT OR IGNORE INTO bus_redrives (consumer, seq) SELECT consumer, seq FROM bus_dead_letters WHERE consumer = ? AND (? IS NULL OR seq = ?)").run(consumer, seq ?? null, seq ?? null);
      n = this.conn.prepare("DELETE FROM bus_dead_letters WHERE consumer = ? AND (? IS NULL OR seq = ?)").run(consumer, seq ?? null, seq ?? null).changes;
      this.conn.exec("COMMIT");
    } catch (err) {
      this.conn.exec("ROLLBACK");
      throw err;
    }
    for (const s of this.#subs) if (s.consumer === consumer) s.redriveArrived();
    return n;
  }

  async consumerLag(): Promise<Map<string, number>> {
    const lag = new Map<string, number>();
    for (const s of this.#subs) lag.set(s.consumer, s.lag());
    return lag;
  }

  /**
   * Deletes events older than `before` (ms) that every known consumer has already passed, except
   * dead letters' events and the types a read model subscribed to here consumes (`retain`: its
   * rebuild replays them). What it deletes is remembered per type (`retained.gaps`).
   */
  async prune(before: number): Promise<number> {
    const min = this.conn.prepare("SELECT MIN(seq) AS s FROM bus_cursors").get<{ s: number | null }>()?.s ?? 0;
    const kept = [...new Set([...this.#subs].filter((s) => s.retains).flatMap((s) => s.types))];
    const where = `appended_at < ? AND seq <= ? AND seq NOT IN (SELECT seq FROM bus_dead_letters)${kept.length > 0 ? ` AND type NOT IN (${kept.map(() => "?").join(", ")})` : ""}`;
    this.conn.exec("BEGIN IMMEDIATE");
    try {
      this.conn
        .prepare(`INSERT INTO bus_pruned (type, through_seq) SELECT type, MAX(seq) FROM bus_events WHERE ${where} GROUP BY type ON CONFLICT (type) DO UPDATE SET through_seq = MAX(through_seq, excluded.through_seq)`)
        .run(before, min, ...kept);
      const n = this.conn.prepare(`DELETE FROM bus_events WHERE ${where}`).run(before, min, ...kept).changes;
      this.conn.exec("COMMIT");
      return n;
    } catch (err) {
      this.conn.exec("ROLLBACK");
      throw err;
    }
  }

  async ping(): Promise<void> {
    this.conn.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#subs].map((s) => s.stop()));
    this.#subs.clear();
    this.#fileClosed = true;
    this.conn.close();
  }
}

/** The embedded log read again for a rebuild: one stream, `log`, positions are seqs. */
class EmbeddedRetainedLog implements RetainedLog {
  constructor(private readonly bus: EmbeddedBus) {}

  async head(): Promise<BusPosition> {
    return { [LOG_STREAM]: this.bus.head };
  }

  async gaps(types: readonly string[]): Promise<string[]> {
    const rows = this.bus.conn.prepare(`SELECT type, through_seq FROM bus_pruned WHERE type IN (${types.map(() => "?").join(", ") || "NULL"}) ORDER BY type`).all<{ type: string; through_seq: number }>(...types);
    return rows.map((r) => `${LOG_STREAM}: ${r.type} pruned up to seq ${r.through_seq}`);
  }

  async count(types: readonly string[], after: BusPosition, upTo: BusPosition): Promise<number> {
    const sql = `SELECT COUNT(*) AS n FROM bus_events WHERE seq > ? AND seq <= ? AND type IN (${types.map(() => "?").join(", ") || "NULL"})`;
    return this.bus.conn.prepare(sql).get<{ n: number }>(after[LOG_STREAM] ?? 0, upTo[LOG_STREAM] ?? 0, ...types)?.n ?? 0;
  }

  async *read(types: readonly string[], after: BusPosition, upTo: BusPosition, opts: { batchSize: number; signal?: AbortSignal }): AsyncIterable<RetainedBatch> {
    const read = this.bus.conn.prepare(`SELECT * FROM bus_events WHERE seq > ? AND seq <= ? AND type IN (${types.map(() => "?").join(", ") || "NULL"}) ORDER BY seq LIMIT ?`);
    const end = upTo[LOG_STREAM] ?? 0;
    for (let from = after[LOG_STREAM] ?? 0; from < end; ) {
      opts.signal?.throwIfAborted();
      if (this.bus.fileClosed) throw new Error("bus is closed");
      const rows = read.all<EventRow>(from, end, ...types, opts.batchSize);
      if (rows.length === 0) return;
      from = rows[rows.length - 1]!.seq;
      yield { deliveries: rows.map((r) => toDelivery(r, 1)), passed: rows.length };
    }
  }
}

/** One consumer's delivery loop over the log. */
class EmbeddedSubscription {
  readonly consumer: string;
  readonly #types: Set<string>;
  readonly #read: SqlStatement;
  readonly #count: SqlStatement;
  readonly #saveCursor: SqlStatement;
  #cursor: number;
  /**
   * Events of this consumer's types after the cursor: counted once in the log (the first `lag()`),
   * then kept by appends and cursor moves, so a metrics scrape costs nothing however far behind
   * the consumer is (a COUNT per scrape read every row behind it).
   */
  #pending: number | undefined;
  /** The cursor as last written to bus_cursors (see #persistCursor). */
  #savedCursor: number;
  #cursorTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Live delivery: while this consumer has seen the log up to `#knownUpTo`, new events are handed
   * to it in memory (`#buffer`) as they are appended, instead of being read back from the log.
   * -1 = unknown: read the log.
   */
  #knownUpTo = -1;
  #buffer: EventRow[] = [];
  #redrivePending = true;
  #running = false;
  /** `pause()` asked the loop to hold still; `#parked` resolves the pausers once it does. */
  #paused = false;
  #parked: Array<() => void> = [];
  #unpark: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #wakeup: (() => void) | undefined;
  #abortSleep: (() => void) | undefined;
  #woken = false;
  /** The buffer's first events have lingered (`SubscribeOptions.lingerMs`): deliver them now. */
  #lingered = false;

  constructor(
    private readonly bus: EmbeddedBus,
    private readonly opts: SubscribeOptions,
  ) {
    this.consumer = opts.consumer;
    this.#types = new Set(opts.types);
    const placeholders = opts.types.map(() => "?").join(", ") || "NULL";
    const c = bus.conn;
    this.#read = c.prepare(`SELECT * FROM bus_events WHERE seq > ? AND type IN (${placeholders}) ORDER BY seq LIMIT ?`);
    this.#count = c.prepare(`SELECT COUNT(*) AS n FROM bus_events WHERE seq > ? AND type IN (${placeholders})`);
    this.#saveCursor = c.prepare("INSERT INTO bus_cursors (consumer, seq) VALUES (?, ?) ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq");
    const saved = c.prepare("SELECT seq FROM bus_cursors WHERE consumer = ?").get<{ seq: number }>(opts.consumer);
    this.#cursor = this.#savedCursor = saved?.seq ?? 0;
    if (!saved) this.#saveCursor.run(this.consumer, 0);
  }

  /** Called after every append: takes the new events in memory if it is live, and wakes up. */
  offer(rows: readonly EventRow[], before: number, head: number): void {
    if (this.#pending !== undefined) for (const r of rows) if (r.seq > this.#cursor && this.#types.has(r.type)) this.#pending++;
    if (this.#knownUpTo === before) {
      for (const r of rows) if (this.#types.has(r.type)) this.#buffer.push(r);
      this.#knownUpTo = head;
      // A consumer far behind falls back to reading the log rather than holding it all in memory.
      if (this.#buffer.length > this.bus.opts.batchSize * 16) {
        this.#buffer = [];
        this.#lingered = false;
        this.#knownUpTo = -1;
      }
    }
    if (rows.some((r) => this.#types.has(r.type))) this.wake();
  }

  redriveArrived(): void {
    this.#redrivePending = true;
    this.wake();
  }

  lag(): number {
    this.#pending ??= this.#count.get<{ n: number }>(this.#cursor, ...this.opts.types)?.n ?? 0;
    return this.#pending;
  }

  /** The last seq this consumer has passed. */
  get cursor(): number {
    return this.#cursor;
  }

  get types(): readonly string[] {
    return this.opts.types;
  }

  get retains(): boolean {
    return this.opts.retain === true;
  }

  /**
   * Holds deliveries back once the batch in flight is handled (a retry's backoff is cut short;
   * the event is retried after `resume`). Resolves with the cursor, written to the log file.
   */
  async pause(): Promise<BusPosition> {
    if (this.#running && !this.#unpark) {
      this.#paused = true;
      const parked = new Promise<void>((r) => this.#parked.push(r));
      this.wake();
      this.#abortSleep?.();
      await parked;
    }
    clearTimeout(this.#cursorTimer);
    this.#cursorTimer = undefined;
    this.#persistCursor();
    return { [LOG_STREAM]: this.#cursor };
  }

  resume(): void {
    this.#paused = false;
    const unpark = this.#unpark;
    this.#unpark = undefined;
    unpark?.();
  }

  /** Waits in the loop until `resume` (or `stop`). Events offered meanwhile are read from the log afterwards. */
  async #park(): Promise<void> {
    this.#buffer = [];
    this.#lingered = false;
    this.#knownUpTo = -1;
    const resumed = new Promise<void>((r) => (this.#unpark = r));
    for (const p of this.#parked.splice(0)) p();
    await resumed;
  }

  wake(): void {
    this.#woken = true;
    const w = this.#wakeup;
    this.#wakeup = undefined;
    w?.();
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run().catch((err) => {
      this.bus.opts.logger.error("bus subscription crashed", { consumer: this.consumer, err });
    });
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.wake();
    this.#abortSleep?.();
    this.resume();
    await this.#loop;
    for (const p of this.#parked.splice(0)) p();
    clearTimeout(this.#cursorTimer);
    this.#persistCursor();
  }

  async #run(): Promise<void> {
    const { batchSize } = this.bus.opts;
    while (this.#running) {
      this.#woken = false;
      if (this.#paused) {
        await this.#park();
        continue;
      }
      if (this.#redrivePending) {
        const redriven = this.#redriven();
        if (redriven.length > 0) {
          await this.#deliverRedriven(redriven);
          continue;
        }
        this.#redrivePending = false;
      }
      let rows: EventRow[];
      // Live events of a lingering consumer wait for company, up to lingerMs or a full batch.
      if (this.opts.lingerMs && !this.#lingered && this.#buffer.length > 0 && this.#buffer.length < batchSize) {
        this.#lingered = true;
        await this.#linger(this.opts.lingerMs, batchSize);
        continue; // looks again: stopping, pausing or a re-drive may have come meanwhile
      }
      if (this.#buffer.length > 0) {
        rows = this.#buffer.splice(0, batchSize);
        this.#lingered = false; // the next batch lingers again
      } else if (this.#knownUpTo === this.bus.head) {
        rows = [];
      } else {
        rows = this.#read.all<EventRow>(this.#cursor, ...this.opts.types, batchSize);
        // A short read saw everything up to the head; from here on new events come in memory.
        if (rows.length < batchSize) this.#knownUpTo = this.bus.head;
      }
      if (rows.length === 0) {
        if (!this.#woken) await this.#idle();
        continue;
      }
      await this.#deliver(rows);
    }
  }

  /**
   * Waits for new events. Once a second it also looks for re-drives, which an operator may have
   * requested from another process (`bun run main.ts dead-letters redrive …`).
   */
  #idle(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#redrivePending = true;
        this.#wakeup = undefined;
        resolve();
      }, 1000);
      timer.unref?.();
      this.#wakeup = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Waits up to `ms` for the buffer to fill a batch; stopping, pausing or a re-drive end the wait
   * early too (each wakes the loop).
   */
  #linger(ms: number, batchSize: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakeup = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      const check = () => {
        if (!this.#running || this.#paused || this.#redrivePending || this.#buffer.length >= batchSize) done();
        else this.#wakeup = check;
      };
      this.#wakeup = check;
    });
  }

  /** The handler's results; one that throws fails the batch's first delivery, as on NATS (the loop goes on). */
  async #handle(batch: Delivery[]): Promise<readonly DeliveryResult[]> {
    try {
      return await this.opts.handle(batch);
    } catch (err) {
      return [failedDelivery(err)];
    }
  }

  /** Delivers rows in order; retries the first failure with backoff, dead-letters it after maxDeliver. */
  async #deliver(rows: EventRow[]): Promise<void> {
    let attempt = 1;
    let pending = rows;
    while (pending.length > 0 && this.#running && !this.#paused) {
      const results = await this.#handle(pending.map((r, i) => toDelivery(r, i === 0 ? attempt : 1)));
      let okCount = 0;
      while (okCount < pending.length && results[okCount]?.ok) okCount++;
      if (okCount > 0) {
        this.#advance(pending[okCount - 1]!.seq, okCount);
        pending = pending.slice(okCount);
        attempt = 1;
      }
      if (pending.length === 0) return;
      // Stopping: a failure now is the handler cut off (a module thread's port closing), not its
      // verdict. Nothing is dead-lettered or counted; the next start delivers it again.
      if (!this.#running) return;
      const failed = pending[0]!;
      const result = results[okCount];
      const error = result && !result.ok ? result.error : new Error("no result for delivery");
      if (attempt >= this.bus.opts.maxDeliver) {
        this.#deadLetter(failed, error, attempt);
        pending = pending.slice(1);
        attempt = 1;
        continue;
      }
      this.bus.opts.logger.warn("event delivery failed; will retry", { consumer: this.consumer, seq: failed.seq, type: failed.type, attempt, err: error });
      await this.#sleep(this.bus.opts.backoffMs[Math.min(attempt - 1, this.bus.opts.backoffMs.length - 1)] ?? 1000);
      attempt++;
    }
  }

  #redriven(): EventRow[] {
    return this.bus.conn
      .prepare("SELECT e.* FROM bus_redrives r JOIN bus_events e ON e.seq = r.seq WHERE r.consumer = ? ORDER BY r.seq LIMIT 1")
      .all<EventRow>(this.consumer);
  }

  async #deliverRedriven(rows: EventRow[]): Promise<void> {
    const row = rows[0]!;
    let attempt = 1;
    while (this.#running && !this.#paused) {
      const [result] = await this.#handle([toDelivery(row, attempt)]);
      // Stopping: as in #deliver, a failure now is no verdict. The re-drive stays; the next start
      // delivers it again.
      if (!result?.ok && !this.#running) return;
      if (result?.ok || attempt >= this.bus.opts.maxDeliver) {
        this.bus.conn.exec("BEGIN IMMEDIATE");
        this.bus.conn.prepare("DELETE FROM bus_redrives WHERE consumer = ? AND seq = ?").run(this.consumer, row.seq);
        this.bus.conn.exec("COMMIT");
        if (!result?.ok) this.#deadLetter(row, result && !result.ok ? result.error : new Error("no result"), attempt);
        return;
      }
      await this.#sleep(this.bus.opts.backoffMs[Math.min(attempt - 1, this.bus.opts.backoffMs.length - 1)] ?? 1000);
      attempt++;
    }
  }

  /**
   * Moves the cursor. It is written to bus_cursors at most every 50 ms (and on stop), not per
   * batch: after a crash the last few milliseconds of events are delivered again, which the
   * consumer's inbox absorbs — cheaper than a commit per batch on the hot path.
   */
  #advance(seq: number, passed: number): void {
    this.#cursor = seq;
    if (this.#pending !== undefined) this.#pending -= passed;
    if (!this.#cursorTimer) {
      this.#cursorTimer = setTimeout(() => {
        this.#cursorTimer = undefined;
        this.#persistCursor();
      }, 50);
      this.#cursorTimer.unref?.();
    }
  }

  #persistCursor(): void {
    if (this.#cursor === this.#savedCursor || this.bus.fileClosed) return;
    this.#saveCursor.run(this.consumer, this.#cursor);
    this.#savedCursor = this.#cursor;
  }

  #deadLetter(row: EventRow, error: Error, attempts: number): void {
    this.bus.opts.logger.error("event dead-lettered", { consumer: this.consumer, seq: row.seq, type: row.type, eventId: row.event_id, attempts, err: error });
    this.bus.conn.exec("BEGIN IMMEDIATE");
    try {
      this.bus.conn
        .prepare("INSERT OR REPLACE INTO bus_dead_letters (consumer, seq, error, attempts, dead_at) VALUES (?, ?, ?, ?, ?)")
        .run(this.consumer, row.seq, describeError(error), attempts, Date.now());
      if (row.seq > this.#cursor) this.#saveCursor.run(this.consumer, row.seq);
      this.bus.conn.exec("COMMIT");
    } catch (err) {
      this.bus.conn.exec("ROLLBACK");
      throw err;
    }
    if (row.seq > this.#cursor) {
      this.#cursor = this.#savedCursor = row.seq;
      if (this.#pending !== undefined) this.#pending--;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      // Only stop() cuts a backoff short: new events arriving must not speed up retries.
      const done = () => {
        clearTimeout(t);
        this.#abortSleep = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#abortSleep = done;
    });
  }
}
