import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { fillPlaceholders } from "drizzle-orm";
import type { PgDatabase } from "drizzle-orm/pg-core";
import type { Sql } from "postgres";
import { newId, uuidv7Floor } from "../../ids.ts";
import type { SqliteDb, Tx } from "../../module.ts";
import { formatTraceparent, type TraceContext, type Tracer } from "../../observability/trace.ts";
import { DuplicateDelivery, inCallerTrace, runAfterCommit, type OutboxRow, type PlatformStorage, type PlatformTx } from "../module-storage.ts";
import { isUniqueViolation, StatementCache, type ReadQuery, type StatementValues, type WriteChecks, type WriteStatement } from "../statements.ts";
import { postgresJsClient, type PgClient } from "./client.ts";
import { acquireRelayLease, listenForOutbox, RelayLeaseLost, type RelayLease } from "./relay-claim.ts";
import type { Options } from "postgres";

/** One write of a body, compiled and bound. */
interface PlannedWrite {
  readonly text: string;
  readonly params: unknown[];
  readonly checks: WriteChecks | undefined;
}

/** What a body did: its writes and its outbox rows, executed after it returned. */
interface Plan {
  readonly writes: PlannedWrite[];
  readonly events: Array<[string, string, string, Uint8Array, string, number]>;
  /** Run once the plan's transaction committed (`PlatformTx.afterCommit`). */
  readonly callbacks: Array<() => void>;
}

interface Pending {
  body: (tx: PlatformTx) => unknown;
  /** The trace of the call that queued the body. */
  trace: TraceContext | undefined;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** A body's write failed; `index` says which plan of the batch it belongs to. */
class PlanFailed extends Error {
  constructor(
    readonly index: number,
    readonly error: Error,
  ) {
    super(error.message);
  }
}

/** Records a body's writes as a plan; usable only while the body runs. */
class PgTx implements PlatformTx {
  readonly dialect = "postgres" as const;
  readonly plan: Plan = { writes: [], events: [], callbacks: [] };
  open = true;

  constructor(private readonly storage: PgModuleStorage) {}

  #assertOpen(): void {
    if (!this.open) throw new Error(`module ${this.storage.module}: transaction already ended; do every await before the transaction`);
  }

  write(statement: WriteStatement, values: StatementValues, checks?: WriteChecks): void {
    this.#assertOpen();
    const c = this.storage.compiledWrite(statement);
    this.plan.writes.push({ text: c.sql, params: fillPlaceholders(c.params, values), checks });
  }

  publish<D extends DescMessage>(schema: D, aggregateId: string, event: MessageInitShape<D>): string {
    this.#assertOpen();
    const id = newId();
    const trace = this.storage.tracer.current();
    const headers = trace ? JSON.stringify({ traceparent: formatTraceparent(trace) }) : "{}";
    this.plan.events.push([id, aggregateId, schema.typeName, toBinary(schema, create(schema, event)), headers, Date.now()]);
    return id;
  }

  claim(consumer: string, eventId: string): boolean {
    this.#assertOpen();
    this.plan.writes.push({
      text: "INSERT INTO selaras_inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
      params: [consumer, eventId, Date.now()],
      checks: { ifUnchanged: () => new DuplicateDelivery(`${consumer} already consumed ${eventId}`) },
    });
    return true;
  }

  afterCommit(callback: () => void): void {
    this.#assertOpen();
    this.plan.callbacks.push(callback);
  }
}

/** Options of a module's Postgres storage. */
export interface PgStorageOptions {
  readonly module: string;
  /** The module's schema (`search_path` of every connection). */
  readonly schema: string;
  /** The module role's postgres.js pool (`search_path` set to `schema`): LISTEN, and reads and writes unless `client` is given. */
  readonly sql: Sql;
  /** The pool for reads and writes when it is not `sql` (Bun.sql under Bun); closed with the storage. */
  readonly client?: PgClient;
  /** Connection options of the module role, for the relay's leader lease (its own connection). */
  readonly leaseOptions: Options<{}>;
  readonly tracer: Tracer;
  /** Most bodies in one transaction. */
  readonly maxBatch?: number;
  /** Group commits in flight at once (each on its own connection of the pool). */
  readonly maxInFlight?: number;
  /** Told the size of every group commit (bodies per COMMIT), for metrics. */
  readonly onCommit?: (bodies: number) => void;
}

/**
 * One module's storage in its own Postgres schema, under its own role.
 *
 * Transaction bodies are synchronous (the same module code runs on SQLite), so a body here
 * records its writes as a plan. Bodies queued while `maxInFlight` transactions are in flight form
 * the next batch: one transaction, BEGIN and every write of every body pipelined (one round
 * trip), the batch's outbox rows in one multi-row insert at the end, one COMMIT. When any write fails or a check
 * fails, the batch rolls back and each body runs again alone, so only the failing one fails.
 * A caller's promise resolves after COMMIT.
 */
export class PgModuleStorage implements PlatformStorage {
  readonly dialect = "postgres" as const;
  readonly module: string;
  readonly schema: string;
  readonly tracer: Tracer;
  /** drizzle over the module's pool, for reads. */
  readonly db: PgDatabase<never>;
  /** postgres.js: LISTEN, and closed with the storage. */
  readonly #sql: Sql;
  /** Reads and group commits. */
  readonly #client: PgClient;
  readonly #opts: PgStorageOptions;
  readonly #reads: StatementCache<{ execute(v: StatementValues): Promise<unknown[]> }>;
  readonly #writes: StatementCache<{ sql: string; params: unknown[] }>;
  #queue: Pending[] = [];
  /** Group commits in flight, and whether a start is scheduled for the current turn's bodies. */
  readonly #inFlight = new Set<Promise<void>>();
  #scheduled = false;
  #closed = false;
  #lease: RelayLease | undefined;
  #leaseAbort = new AbortController();
  #standingBy = false;
  readonly #listeners = new Set<() => void>();
  #unlisten: (() => Promise<void>) | undefined;

  constructor(opts: PgStorageOptions) {
    this.#opts = opts;
    this.module = opts.module;
    this.schema = opts.schema;
    this.tracer = opts.tracer;
    this.#sql = opts.sql;
    this.#client = opts.client ?? postgresJsClient(opts.sql);
    this.db = this.#client.db;
    const asBuilder = this.db as unknown as SqliteDb;
    this.#reads = new StatementCache((s) => (s.build(asBuilder, s.tables.postgres, "postgres") as { prepare(name: string): never }).prepare(`${this.module}_read`));
    this.#writes = new StatementCache((s) => (s.build(asBuilder, s.tables.postgres, "postgres") as { toSQL(): { sql: string; params: unknown[] } }).toSQL());
  }

  compiledWrite(statement: WriteStatement): { sql: string; params: unknown[] } {
    return this.#writes.get(statement);
  }

  async read<Row>(query: ReadQuery<Row>, values: StatementValues = {}): Promise<Row[]> {
    return (await this.#reads.get(query).execute(values)) as Row[];
  }

  async queryRaw<Row = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    let n = 0;
    const numbered = text.replace(/\?/g, () => `$${++n}`);
    return this.#client.query<Row>(numbered, params);
  }

  transact<T>(body: (tx: Tx) => T): Promise<T> {
    return this.transactInternal(body);
  }

  transactInternal<T>(body: (tx: PlatformTx) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`storage of module ${this.module} is closed`));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ body, trace: this.tracer.current(), resolve: resolve as (v: unknown) => void, reject });
      if (!this.#scheduled && this.#inFlight.size < this.#maxInFlight) {
        // Let the current turn of the event loop queue its bodies too.
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#start();
        });
      }
    });
  }

  get #maxInFlight(): number {
    return this.#opts.maxInFlight ?? 1;
  }

  /**
   * Starts group commits of what is queued while fewer than `maxInFlight` are in flight; each
   * one that ends starts the next. Bodies of one caller that awaits each commit stay in order;
   * bodies in flight side by side are independent (their checks hold under concurrency: unique
   * constraints, expected versions).
   */
  #start(): void {
    while (this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight) {
      const batch = this.#queue.splice(0, this.#opts.maxBatch ?? 256);
      const run: Promise<void> = this.#runBatch(batch)
        .catch((err) => {
          for (const p of batch) p.reject(err); // no-op for those already settled
        })
        .finally(() => {
          this.#inFlight.delete(run);
          this.#start();
        });
      this.#inFlight.add(run);
    }
  }

  async #runBatch(batch: Pending[]): Promise<void> {
    const ready: Array<{ p: Pending; plan: Plan; value: unknown }> = [];
    for (const p of batch) {
      const tx = new PgTx(this);
      try {
        const value = inCallerTrace(this.tracer, p.trace, () => p.body(tx));
        if (value instanceof Promise) {
          value.catch(() => {});
          throw new Error(`module ${this.module}: a transaction body must be synchronous (it returned a Promise); do every await before the transaction`);
        }
        ready.push({ p, plan: tx.plan, value });
      } catch (err) {
        p.reject(err);
      } finally {
        tx.open = false;
      }
    }
    if (ready.length === 0) return;
    try {
      await this.#execute(ready.map((r) => r.plan));
      this.#opts.onCommit?.(ready.length);
      for (const r of ready) runAfterCommit(r.plan.callbacks);
      for (const r of ready) r.p.resolve(r.value);
      return;
    } catch (err) {
      if (ready.length === 1) {
        ready[0]!.p.reject(err instanceof PlanFailed ? err.error : err);
        return;
      }
    }
    // Some body of the batch failed: each runs alone, so only the failing ones fail.
    for (const r of ready) {
      try {
        await this.#execute([r.plan]);
        this.#opts.onCommit?.(1);
        runAfterCommit(r.plan.callbacks);
        r.p.resolve(r.value);
      } catch (err) {
        r.p.reject(err instanceof PlanFailed ? err.error : err);
      }
    }
  }

  /**
   * Runs the plans in one transaction; rejects with `PlanFailed` when a write or check of a plan
   * fails. BEGIN and every write go out back to back on a reserved connection (one round trip for
   * all of them), then COMMIT once every answer was checked — two round trips per batch.
   */
  async #execute(plans: readonly Plan[]): Promise<void> {
    const t = await this.#client.reserve();
    try {
      const pending: Promise<unknown>[] = [t.send("BEGIN")];
      plans.forEach((plan, index) => {
        for (const w of plan.writes) {
          pending.push(
            t.send(w.text, w.params).then(
              (count) => {
                if (count === 0 && w.checks?.ifUnchanged) throw new PlanFailed(index, w.checks.ifUnchanged());
              },
              (err: Error) => {
                throw new PlanFailed(index, w.checks?.ifDuplicate && isUniqueViolation(err) ? w.checks.ifDuplicate() : err);
              },
            ),
          );
        }
      });
      // The outbox last: its insert takes the module's outbox lock (commit order = seq order).
      const events = plans.flatMap((p) => p.events);
      // In chunks of powers of two (37 rows: 32 + 4 + 1), so a module prepares ten statement
      // texts at most, not one per batch size.
      for (let i = 0; i < events.length; ) {
        const size = Math.min(OUTBOX_ROWS_PER_INSERT, 2 ** Math.floor(Math.log2(events.length - i)));
        pending.push(t.send(outboxInsert(size), events.slice(i, i + size).flat()));
        i += size;
      }
      // Every statement answers before COMMIT anyway. The first failure in send order is the
      // cause: the statements after a failed one fail as well (the transaction is aborted), and
      // their rejections can settle first (Bun.sql settles a whole read of answers at once).
      const failed = (await Promise.allSettled(pending)).find((r) => r.status === "rejected");
      if (failed) {
        await t.send("ROLLBACK").catch(() => {});
        throw failed.reason;
      }
      await t.send("COMMIT");
    } finally {
      t.release();
    }
  }

  async readUnpublished(limit: number): Promise<OutboxRow[]> {
    // The lease holds a connection of its own: claim it only once there is something to publish
    // (a module that only consumes never does), and keep it from then on.
    if (!this.#lease) {
      const [pending] = await this.#client.query("SELECT 1 AS one FROM selaras_outbox WHERE published_at IS NULL LIMIT 1");
      if (!pending) return [];
    }
    const lease = await this.#leader();
    try {
      return await lease.readUnpublished(limit);
    } catch (err) {
      if (err instanceof RelayLeaseLost) this.#lease = undefined;
      throw err;
    }
  }

  async markPublished(maxSeq: number, at: number, next = 0): Promise<OutboxRow[]> {
    const lease = await this.#leader();
    try {
      return await lease.markPublished(maxSeq, at, next);
    } catch (err) {
      if (err instanceof RelayLeaseLost) this.#lease = undefined;
      throw err;
    }
  }

  /** Other processes of the module may write the same schema. */
  readonly soleWriter = false;

  /** False only while another instance holds the lease and this one waits for it. */
  get relayLeader(): boolean {
    return !this.#standingBy;
  }

  stopRelaying(): void {
    this.#leaseAbort.abort();
  }

  /** The relay leadership of this module, claimed (waiting as a standby) when not held. */
  async #leader(): Promise<RelayLease> {
    if (this.#lease) return this.#lease;
    if (this.#leaseAbort.signal.aborted) throw new Error(`module ${this.module}: relaying stopped`);
    this.#standingBy = true;
    const lease = await acquireRelayLease(this.#opts.leaseOptions, this.schema, { signal: this.#leaseAbort.signal, client: this.#client.kind }).finally(() => (this.#standingBy = false));
    if (!lease) throw new Error(`module ${this.module}: relaying stopped`);
    if (this.#closed || this.#leaseAbort.signal.aborted) {
      await lease.release();
      throw new Error(`storage of module ${this.module} is closed`);
    }
    return (this.#lease = lease);
  }

  onOutboxCommit(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts listening for commits with events (from any process) to wake the relay. */
  async listen(): Promise<void> {
    this.#unlisten = await listenForOutbox(this.#sql, this.schema, () => {
      for (const l of this.#listeners) l();
    });
  }

  /** The backlog after this instance's relay marks, written or not (its lease's; else what the table says). */
  async outboxStats(): Promise<{ backlog: number; oldestCreatedAt: number | undefined }> {
    const [row] = await this.#client.query<{ n: number; oldest: number | null }>(
      "SELECT count(*)::int AS n, min(created_at)::float8 AS oldest FROM selaras_outbox WHERE published_at IS NULL AND seq > $1",
      [this.#lease?.markedUpTo ?? 0],
    );
    return { backlog: row?.n ?? 0, oldestCreatedAt: row?.oldest ?? undefined };
  }

  async prune(outboxBefore: number, inboxBefore: number): Promise<{ outbox: number; inbox: number }> {
    // Marks the relay has not written yet count: their rows are published.
    await this.#lease?.flush().catch(() => {});
    const t = await this.#client.reserve();
    try {
      const outbox = await t.send("DELETE FROM selaras_outbox WHERE published_at IS NOT NULL AND published_at < $1", [outboxBefore]);
      const inbox = await t.send("DELETE FROM selaras_inbox WHERE event_id < $1::uuid", [uuidv7Floor(inboxBefore)]);
      return { outbox, inbox };
    } finally {
      t.release();
    }
  }

  async ping(): Promise<void> {
    await this.#client.query("SELECT 1");
  }

  /** Waits for queued bodies to commit, gives up the relay lease, closes the pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // New bodies are refused from here; those already queued still commit.
    this.#closed = true;
    while (this.#inFlight.size > 0 || this.#queue.length > 0) await Promise.all([...this.#inFlight, new Promise((r) => setImmediate(r))]);
    this.#leaseAbort.abort();
    await this.#unlisten?.().catch(() => {});
    await this.#lease?.release().catch(() => {});
    this.#lease = undefined;
    await this.#opts.client?.end();
    await this.#sql.end({ timeout: 5 });
  }
}

/** Most outbox rows per insert, a power of two: 6 parameters each, well under Postgres's 65,535. */
const OUTBOX_ROWS_PER_INSERT = 512;

const outboxInserts = new Map<number, string>();
/** `INSERT INTO selaras_outbox … VALUES ($1, …, $6), …` for `rows` rows (a power of two; cached). */
function outboxInsert(rows: number): string {
  let text = outboxInserts.get(rows);
  if (!text) {
    const values = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 6 }, (_, c) => `$${r * 6 + c + 1}`).join(", ")})`);
    text = `INSERT INTO selaras_outbox (event_id, aggregate_id, type, payload, headers, created_at) VALUES ${values.join(", ")}`;
    outboxInserts.set(rows, text);
  }
  return text;
}
