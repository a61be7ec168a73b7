import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { newId, uuidv7Floor } from "../ids.ts";
import type { ModuleStorage, SqliteDb, Tx } from "../module.ts";
import { formatTraceparent, type TraceContext, type Tracer } from "../observability/trace.ts";
import type { SqliteConnection, SqlStatement } from "./sqlite.ts";
import { isUniqueViolation, StatementCache, type ReadQuery, type StatementValues, type WriteChecks, type WriteStatement } from "./statements.ts";

/** An outbox row as the relay reads it. */
export interface OutboxRow {
  seq: number;
  event_id: string;
  aggregate_id: string;
  type: string;
  payload: Uint8Array;
  headers: string;
  created_at: number;
}

/** An outbox row from a Postgres driver row (`seq` and `created_at` read as float8, `event_id` as text). */
export function outboxRowOf(r: Record<string, unknown>): OutboxRow {
  return {
    seq: r.seq as number,
    event_id: r.event_id as string,
    aggregate_id: r.aggregate_id as string,
    type: r.type as string,
    payload: new Uint8Array(r.payload as Uint8Array),
    headers: r.headers as string,
    created_at: r.created_at as number,
  };
}

interface Pending {
  body: (tx: SqliteTx) => unknown;
  /** The trace of the call that queued the body. */
  trace: TraceContext | undefined;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * Runs a queued body in the trace of the call that queued it. A group runs in the async context
 * of whichever call scheduled the flush, so without this every body of the group would publish
 * its events with the first caller's `traceparent` (or another request's trace instead of none).
 */
export function inCallerTrace<T>(tracer: Tracer, trace: TraceContext | undefined, body: () => T): T {
  if (tracer.current() === trace) return body();
  // `run(undefined)` clears the trace: the caller had none.
  return tracer.run(trace as TraceContext, body);
}

/** The platform's side of a transaction, on either dialect: module writes and events, plus inbox claims. */
export interface PlatformTx extends Tx {
  /**
   * Records `eventId` as consumed by `consumer`. SQLite answers at once: false when it already
   * was (a redelivery: skip the effect). Postgres cannot answer inside the body: it returns true
   * and fails the body with `DuplicateDelivery` at execution if the event was consumed before.
   */
  claim(consumer: string, eventId: string): boolean;
  /**
   * Runs `callback` once this body's writes are committed, before its caller is answered; never
   * if the body or the commit fails. For platform state in memory that may only follow committed
   * rows (the event store's cache). It must not throw: a throw is ignored, as the commit stands.
   */
  afterCommit(callback: () => void): void;
}

/** Runs after-commit callbacks; one that throws does not stop the others (the commit stands either way). */
export function runAfterCommit(callbacks: ReadonlyArray<() => void> | undefined): void {
  if (!callbacks) return;
  for (const c of callbacks) {
    try {
      c();
    } catch {}
  }
}

/** A claimed event turned out to be consumed already (Postgres): the body is rolled back and the delivery counts as a duplicate. */
export class DuplicateDelivery extends Error {
  override readonly name = "DuplicateDelivery";
}

/** A module's storage as the platform drives it: transactions with inbox claims, the outbox for the relay, health. */
export interface PlatformStorage extends ModuleStorage {
  transactInternal<T>(body: (tx: PlatformTx) => T): Promise<T>;
  /** Unpublished outbox rows in commit order. */
  readUnpublished(limit: number): Promise<OutboxRow[]>;
  /**
   * Marks every unpublished row up to `maxSeq` as published (published rows are a prefix of seq),
   * and returns up to `next` unpublished rows after it. The mark holds at once for this storage's
   * `readUnpublished` and `outboxStats`; it is written to the table a little later (with the next
   * commit on SQLite, within 50 ms on Postgres; at close either way). See ADR 0003.
   */
  markPublished(maxSeq: number, at: number, next?: number): Promise<OutboxRow[]>;
  /** Calls `listener` after commits that wrote events (SQLite: this process's; Postgres: any process's, via NOTIFY). */
  onOutboxCommit(listener: () => void): () => void;
  outboxStats(): Promise<{ backlog: number; oldestCreatedAt: number | undefined }>;
  prune(outboxBefore: number, inboxBefore: number): Promise<{ outbox: number; inbox: number }>;
  /**
   * False while another instance of this module publishes its outbox (Postgres relay lease) and
   * this one stands by: nothing here to drain.
   */
  readonly relayLeader: boolean;
  /** Ends the relay's wait for the lease (shutdown); `readUnpublished` then fails at once. */
  stopRelaying(): void;
  /**
   * True when nothing but this storage commits to its database while it is open: a SQLite file
   * this process owns (ADR 0018), opened once. What this storage's own commits wrote is then all
   * there is, so state kept in memory from them needs no reading back (the event store's kept
   * streams). False on Postgres, where other processes of the module may write.
   */
  readonly soleWriter: boolean;
  /** Throws unless the database answers (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The transaction object: module writes through `write`, events through `publish`, the platform's inbox through `claim`. */
export class SqliteTx implements PlatformTx {
  readonly dialect = "sqlite" as const;
  outboxAppended = 0;
  /** The running body's after-commit callbacks (see `PlatformTx.afterCommit`). */
  callbacks: Array<() => void> | undefined;

  constructor(private readonly storage: SqliteModuleStorage) {}

  /** The drizzle handle of this transaction (SQLite only; platform tests). Unusable after the body ended. */
  get db(): SqliteDb {
    return this.storage.txDb;
  }

  write(statement: WriteStatement, values: StatementValues, checks?: WriteChecks): void {
    this.storage.assertInTransaction();
    let changes: number;
    try {
      changes = (this.storage.compiled(statement) as { run(v: StatementValues): { changes: number } }).run(values).changes;
    } catch (err) {
      if (checks?.ifDuplicate && isUniqueViolation(err)) throw checks.ifDuplicate();
      throw err;
    }
    if (changes === 0 && checks?.ifUnchanged) throw checks.ifUnchanged();
  }

  publish<D extends DescMessage>(schema: D, aggregateId: string, event: MessageInitShape<D>): string {
    this.storage.assertInTransaction();
    const id = newId();
    const trace = this.storage.tracer.current();
    const headers = trace ? JSON.stringify({ traceparent: formatTraceparent(trace) }) : "{}";
    this.storage.stmts.outboxInsert.run(id, aggregateId, schema.typeName, toBinary(schema, create(schema, event)), headers, Date.now());
    this.outboxAppended++;
    return id;
  }

  /** Records `eventId` as consumed by `consumer`; false when it already was (a redelivery: skip the effect). */
  claim(consumer: string, eventId: string): boolean {
    this.storage.assertInTransaction();
    return this.storage.stmts.inboxInsert.run(consumer, eventId, Date.now()).changes === 1;
  }

  afterCommit(callback: () => void): void {
    this.storage.assertInTransaction();
    (this.callbacks ??= []).push(callback);
  }
}

/**
 * How long a relay's mark may wait before it is written (ADR 0003). SQLite: for a commit of the
 * module's to ride on, else it gets one of its own. Postgres: each write is a commit (a WAL
 * flush), so the lease writes the marks of this long in one statement instead of one per batch.
 */
export const MARK_DELAY_MS = 50;

/**
 * One module's private SQLite database with group commit.
 *
 * Why group commit: a SQLite commit is the expensive part of a write. Bodies queued in the same
 * turn of the event loop run in one transaction, each in its own SAVEPOINT (so a failing body
 * rolls back alone), and share one COMMIT. A caller's promise resolves only after that COMMIT,
 * so a 202 is never sent for a write that a crash could still lose.
 */
export class SqliteModuleStorage implements PlatformStorage {
  readonly dialect = "sqlite" as const;
  readonly db: SqliteDb;
  /**
   * The `db` transaction bodies get: the same connection, but unusable outside a transaction, so
   * code that kept it past its body (an `await` inside it) fails loudly instead of writing
   * outside any transaction. One stable object, so per-connection caches (prepared queries) hit.
   */
  readonly txDb: SqliteDb;
  #inTransaction = false;
  readonly stmts: { outboxInsert: SqlStatement; inboxInsert: SqlStatement; readUnpublished: SqlStatement; markPublished: SqlStatement };
  #queue: Pending[] = [];
  #scheduled = false;
  #closed = false;
  /**
   * Highest outbox seq the relay published (every row up to it is on the bus). Undefined until
   * first needed, then found in the table (`#publishedPrefix`).
   */
  #published: number | undefined;
  /** Highest seq whose mark is committed to the table: the lower bound of the next mark's UPDATE. */
  #markedInTable = 0;
  /** Marks not yet written, oldest first (seq, published_at): they ride on the next commit (`#flush`), or a commit of their own after MARK_DELAY_MS. */
  #marks: Array<[seq: number, at: number]> = [];
  #markTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #outboxListeners = new Set<() => void>();
  readonly #commitListeners = new Set<() => void>();
  readonly #statements = new StatementCache<unknown>((s) => (s.build(this.conn.db, s.tables.sqlite, "sqlite") as { prepare(): unknown }).prepare());

  constructor(
    readonly module: string,
    readonly conn: SqliteConnection,
    readonly tracer: Tracer,
    /** Told the size of every group commit (bodies per COMMIT), for metrics. */
    private readonly onCommit?: (bodies: number) => void,
    /** See `PlatformStorage.soleWriter`: only the platform, which owns the file, says so. */
    readonly soleWriter = false,
  ) {
    this.db = conn.db;
    this.txDb = new Proxy(conn.db, {
      get: (target, prop, receiver) => {
        this.assertInTransaction();
        return Reflect.get(target, prop, receiver);
      },
    });
    this.stmts = {
      outboxInsert: conn.prepare(
        "INSERT INTO selaras_outbox (event_id, aggregate_id, type, payload, headers, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      inboxInsert: conn.prepare("INSERT OR IGNORE INTO selaras_inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)"),
      readUnpublished: conn.prepare(
        "SELECT seq, event_id, aggregate_id, type, payload, headers, created_at FROM selaras_outbox WHERE published_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
      ),
      // A range of the primary key: the outbox has no index on published_at (migration 0002).
      markPublished: conn.prepare("UPDATE selaras_outbox SET published_at = ? WHERE seq > ? AND seq <= ? AND published_at IS NULL"),
    };
  }

  /** The statement compiled for this connection (drizzle prepared query). */
  compiled(statement: ReadQuery<unknown> | WriteStatement): unknown {
    return this.#statements.get(statement);
  }

  async read<Row>(query: ReadQuery<Row>, values: StatementValues = {}): Promise<Row[]> {
    return (this.compiled(query) as { all(v: StatementValues): Row[] }).all(values);
  }

  async queryRaw<Row = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    return this.conn.prepare(sql).all<Row>(...params);
  }

  transact<T>(body: (tx: Tx) => T): Promise<T> {
    return this.transactInternal(body);
  }

  /** `transact` with the platform's full transaction object (inbox claims). */
  transactInternal<T>(body: (tx: SqliteTx) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`storage of module ${this.module} is closed`));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ body, trace: this.tracer.current(), resolve: resolve as (v: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Throws unless a transaction body of this storage is running right now. */
  assertInTransaction(): void {
    if (!this.#inTransaction) throw new Error(`module ${this.module}: transaction already ended; do every await before the transaction`);
  }

  /** The process's own file: this relay is always the one. */
  readonly relayLeader = true;

  stopRelaying(): void {}

  /** Called after every commit that appended outbox rows: wakes the relay at once. */
  onOutboxCommit(listener: () => void): () => void {
    this.#outboxListeners.add(listener);
    return () => this.#outboxListeners.delete(listener);
  }

  /**
   * Called after every commit of this storage, whatever it wrote: wakes the change capture,
   * whose triggers write its change table in the module's own transactions (platform/cdc).
   */
  afterCommit(listener: () => void): () => void {
    this.#commitListeners.add(listener);
    return () => this.#commitListeners.delete(listener);
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    const tx = new SqliteTx(this);
    const results: Array<{ ok: true; value: unknown; callbacks: Array<() => void> | undefined } | { ok: false; error: unknown }> = [];
    const single = batch.length === 1;
    try {
      this.conn.exec("BEGIN IMMEDIATE");
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    // Synchronous from here to COMMIT: nothing else can run while the flag is up.
    this.#inTransaction = true;
    for (const p of batch) {
      if (!single) this.conn.exec("SAVEPOINT body");
      const before = tx.outboxAppended;
      tx.callbacks = undefined;
      try {
        const value = inCallerTrace(this.tracer, p.trace, () => p.body(tx));
        if (value instanceof Promise) {
          value.catch(() => {});
          throw new Error(`module ${this.module}: a transaction body must be synchronous (it returned a Promise); do every await before the transaction`);
        }
        if (!single) this.conn.exec("RELEASE body");
        results.push({ ok: true, value, callbacks: tx.callbacks });
      } catch (error) {
        tx.outboxAppended = before;
        if (single) {
          this.#inTransaction = false;
          this.conn.exec("ROLLBACK");
          p.reject(error);
          return;
        }
        this.conn.exec("ROLLBACK TO body; RELEASE body");
        results.push({ ok: false, error });
      }
    }
    this.#inTransaction = false;
    // The relay's marks ride on this commit (outside every body's savepoint): no commit of their own.
    const marks = this.#writeMarks();
    try {
      this.conn.exec("COMMIT");
    } catch (error) {
      try {
        this.conn.exec("ROLLBACK");
      } catch {}
      for (const p of batch) p.reject(error);
      return;
    }
    if (marks > 0) this.#marksWritten(marks);
    this.onCommit?.(batch.length);
    for (const r of results) if (r.ok) runAfterCommit(r.callbacks);
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (r.ok) p.resolve(r.value);
      else p.reject(r.error);
    });
    if (tx.outboxAppended > 0) for (const l of this.#outboxListeners) l();
    for (const l of this.#commitListeners) l();
  }

  /** Unpublished outbox rows in commit order (after the relay's mark, written or not). */
  async readUnpublished(limit: number): Promise<OutboxRow[]> {
    return this.stmts.readUnpublished.all<OutboxRow>(this.#publishedUpTo, limit);
  }

  /** See `#published`. */
  get #publishedUpTo(): number {
    if (this.#published === undefined) this.#published = this.#markedInTable = this.#publishedPrefix();
    return this.#published;
  }

  /** The last seq of the table's published rows: they are a prefix of seq (the relay marks in order). */
  #publishedPrefix(): number {
    return this.#firstSeqWhere((publishedAt) => publishedAt === null) - 1;
  }

  /**
   * The first outbox seq whose `published_at` satisfies `stop` (MAX(seq) + 1 if none does), for a
   * `stop` that, going up the seqs, once true stays true: published rows are a prefix of seq and
   * their published_at rises with it. A binary search by primary key: O(log n) lookups, and no
   * index on published_at to maintain on every write.
   */
  #firstSeqWhere(stop: (publishedAt: number | null) => boolean): number {
    const first = this.conn.prepare("SELECT seq, published_at FROM selaras_outbox WHERE seq >= ? ORDER BY seq LIMIT 1");
    let lo = this.conn.prepare("SELECT MIN(seq) AS s FROM selaras_outbox").get<{ s: number | null }>()?.s ?? 1;
    let hi = (this.conn.prepare("SELECT MAX(seq) AS s FROM selaras_outbox").get<{ s: number | null }>()?.s ?? 0) + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const row = first.get<{ seq: number; published_at: number | null }>(mid);
      if (!row || row.seq >= hi) hi = mid;
      else if (!stop(row.published_at)) lo = row.seq + 1;
      else hi = row.seq;
    }
    return lo;
  }

  /**
   * Marks every row up to `maxSeq` as published (the relay publishes strictly in order), then
   * reads up to `next` more. The mark holds at once for this process; it is written with the next
   * commit of this storage, or in a commit of its own `MARK_DELAY_MS` later if none comes, or at
   * close. A crash before then publishes those rows again on the next start: the same event ids,
   * which the bus deduplicates and the consumers' inboxes absorb — at-least-once either way, and
   * a commit per relay batch saved.
   */
  async markPublished(maxSeq: number, at: number, next = 0): Promise<OutboxRow[]> {
    if (maxSeq > this.#publishedUpTo) {
      this.#published = maxSeq;
      this.#marks.push([maxSeq, at]);
      this.#markTimer ??= setTimeout(() => {
        this.#markTimer = undefined;
        if (this.#marks.length > 0 && !this.#closed) this.transactInternal(() => undefined).catch(() => {});
      }, MARK_DELAY_MS);
      this.#markTimer.unref?.();
    }
    return next > 0 ? this.readUnpublished(next) : [];
  }

  /**
   * Writes the pending marks in the open transaction, each with its own time (pruning goes by it).
   * A failure leaves them pending, the bodies' writes unharmed. Returns how many it wrote.
   */
  #writeMarks(): number {
    const marks = this.#marks.length;
    if (marks === 0) return 0;
    try {
      let after = this.#markedInTable;
      for (const [seq, at] of this.#marks) {
        this.stmts.markPublished.run(at, after, seq);
        after = seq;
      }
      return marks;
    } catch {
      return 0;
    }
  }

  /** The first `n` pending marks are committed. */
  #marksWritten(n: number): void {
    if (n > 0) this.#markedInTable = this.#marks[n - 1]![0];
    this.#marks.splice(0, n);
    if (this.#marks.length > 0) return;
    clearTimeout(this.#markTimer);
    this.#markTimer = undefined;
  }

  /**
   * Deletes published outbox rows older than `outboxBefore` and inbox entries older than
   * `inboxBefore` (ms). The inbox must outlive the bus's retention: an event the bus can still
   * redeliver must still be recognised as processed.
   */
  prune(outboxBefore: number, inboxBefore: number): Promise<{ outbox: number; inbox: number }> {
    return this.transactInternal(() => {
      const outbox = this.conn.prepare("DELETE FROM selaras_outbox WHERE seq < ? AND published_at IS NOT NULL").run(this.#outboxCut(outboxBefore)).changes;
      // Inbox keys are UUIDv7 (time-ordered): delete each consumer's old range along the key.
      const floor = uuidv7Floor(inboxBefore);
      const nextConsumer = this.conn.prepare("SELECT consumer FROM selaras_inbox WHERE consumer > ? ORDER BY consumer LIMIT 1");
      const del = this.conn.prepare("DELETE FROM selaras_inbox WHERE consumer = ? AND event_id < ?");
      let inbox = 0;
      for (let c = nextConsumer.get<{ consumer: string }>("")?.consumer; c !== undefined; c = nextConsumer.get<{ consumer: string }>(c)?.consumer) {
        inbox += del.run(c, floor).changes;
      }
      return { outbox, inbox };
    });
  }

  /**
   * The first outbox seq to keep: the first row not published before `before`, and never past the
   * newest row. Seq has no AUTOINCREMENT (migration 0002): SQLite gives a new row MAX(seq) + 1, so
   * the newest row stays and seqs never go back under the relay's position.
   */
  #outboxCut(before: number): number {
    const newest = this.conn.prepare("SELECT MAX(seq) AS s FROM selaras_outbox").get<{ s: number | null }>()?.s ?? 0;
    return Math.min(newest, this.#firstSeqWhere((publishedAt) => publishedAt === null || publishedAt >= before));
  }

  /** Backlog size and the creation time of the oldest unpublished row. */
  async outboxStats(): Promise<{ backlog: number; oldestCreatedAt: number | undefined }> {
    const row = this.conn.prepare(
      "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM selaras_outbox WHERE published_at IS NULL AND seq > ?",
    ).get<{ n: number; oldest: number | null }>(this.#publishedUpTo);
    return { backlog: row?.n ?? 0, oldestCreatedAt: row?.oldest ?? undefined };
  }

  /** A cheap query proving the file is readable (readiness). */
  async ping(): Promise<void> {
    this.conn.prepare("SELECT 1").get();
  }

  /** Waits for queued bodies to commit, then closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#queue.length > 0) await new Promise<void>((r) => setImmediate(r));
    this.#closed = true;
    if (this.#marks.length > 0) {
      this.conn.exec("BEGIN IMMEDIATE");
      this.#marksWritten(this.#writeMarks());
      this.conn.exec("COMMIT");
    }
    this.conn.close();
  }
}
