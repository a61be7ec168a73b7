import type { Sql } from "postgres";
import { createLogger, type Logger } from "../observability/logger.ts";
import { assertPublicationName, assertSlotName, ensureSlotAndPublication, slotLag, type TableRef } from "./admin.ts";
import { TransactionAssembler, type ChangeEvent, type CommittedTransaction } from "./change-event.ts";
import { formatLsn, maxLsn, type Lsn } from "./lsn.ts";
import { parsePgOutput } from "./pgoutput.ts";
import { standbyStatusUpdate, type ServerMessage } from "./replication-protocol.ts";
import { CdcSetupError, connect, ReplicationSession, type CdcConnection } from "./session.ts";

/** Least time between two status updates that only move the confirmed position (see `#advance`). */
const STATUS_MIN_INTERVAL_MS = 50;

/** What `onChanges` is told about the batch it receives. */
export interface ChangeBatch {
  /** Commit LSN of the batch's last transaction, Postgres' text form (`0/16B3748`). */
  readonly commitLsn: string;
  /** End of that commit record: what the reader confirms to the server once the callback resolved. */
  readonly endLsn: string;
  /** Whole transactions in the batch, in commit order. */
  readonly transactions: number;
  /** 1 on this reader's first try, 2, 3… on retries after the callback threw. */
  readonly attempt: number;
}

/** Options of `startCdc`. */
export interface CdcOptions {
  /** How to reach Postgres. The role needs REPLICATION (or superuser); see README.md. */
  readonly connection: CdcConnection;
  /** The permanent pgoutput slot to stream (see `ensureSlotAndPublication`). */
  readonly slot: string;
  /** The publication(s) choosing the captured tables. */
  readonly publication: string | readonly string[];
  /** When given, `ensureSlotAndPublication` runs first for these tables (needs the privileges it lists). */
  readonly tables?: readonly TableRef[];
  /** Passed to `ensureSlotAndPublication` with `tables` (default true). */
  readonly replicaIdentityFull?: boolean;
  /**
   * Receives whole committed transactions, in commit order, several per call when they queue up.
   * The position is confirmed only after the returned promise resolves; a throw (or rejection)
   * delivers the same batch again after a backoff, and nothing after it is delivered meanwhile.
   */
  readonly onChanges: (changes: ChangeEvent[], batch: ChangeBatch) => void | Promise<void>;
  /** Standby status update interval, also the idle keepalive round trip (default 10 000). */
  readonly heartbeatMs?: number;
  /** Reconnect when the server has been silent this long despite heartbeats (default max(3 × heartbeat, 10 000)). */
  readonly receiveTimeoutMs?: number;
  /** Backoff of consumer retries and reconnects: doubles from `initialMs` up to `maxMs` (default 100 → 10 000). */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Changes per `onChanges` call at most, unless one transaction alone is larger (default 1000). */
  readonly maxBatchChanges?: number;
  /** Stop reading from the server while this many changes wait for the consumer (default 10 000). */
  readonly maxQueuedChanges?: number;
  /** How long the first connection may keep failing for transient reasons before `startCdc` throws (default 30 000). */
  readonly startTimeoutMs?: number;
  readonly logger?: Logger;
}

/** A running CDC reader. */
export interface CdcReader {
  /** Lets the callback in flight finish, confirms, closes the connection. Idempotent. */
  stop(): Promise<void>;
  /** Bytes of WAL the server keeps for the slot: `pg_current_wal_lsn() - confirmed_flush_lsn` (for a gauge; until `stop()`). */
  lag(): Promise<number>;
  /** The position confirmed so far (text form); a restart resumes after it. */
  readonly confirmedLsn: string;
  /** Whether a replication connection is streaming right now. */
  readonly connected: boolean;
  /** Connections re-opened after one was lost. */
  readonly reconnects: number;
}

/**
 * Streams the changes of a publication from a permanent logical replication slot, as Debezium
 * change events, at least once and in commit order; see README.md for the guarantee.
 * Resolves once streaming started; throws if the slot is missing or the first connection keeps
 * failing for `startTimeoutMs`. Later connection losses are retried for ever.
 * @example
 * const cdc = await startCdc({ connection: url, slot: "orders_cdc", publication: "orders_cdc",
 *   tables: [{ schema: "orders", table: "orders" }],
 *   onChanges: async (changes) => { for (const c of changes) await project(c); } });
 * setInterval(async () => lagGauge.set(await cdc.lag()), 15_000);
 * await cdc.stop();
 */
export async function startCdc(options: CdcOptions): Promise<CdcReader> {
  const reader = new Reader(options);
  await reader.start();
  return reader;
}

type Item = { kind: "tx"; tx: CommittedTransaction } | { kind: "mark"; lsn: Lsn };

/** One connection's state: what it received and the consumer has not confirmed yet. */
class Pipeline {
  session!: ReplicationSession;
  assembler: TransactionAssembler | undefined;
  /** Committed transactions and keepalive marks in stream order; a batch leaves only once confirmed. */
  readonly queue: Item[] = [];
  queuedChanges = 0;
  paused = false;
  dead = false;
  deliverer: Promise<void> = Promise.resolve();
  #waiter: (() => void) | undefined;

  wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  idle(): Promise<void> {
    return new Promise((r) => (this.#waiter = r));
  }
}

class Reader implements CdcReader {
  readonly #opts: CdcOptions;
  readonly #log: Logger;
  readonly #publications: readonly string[];
  readonly #heartbeatMs: number;
  readonly #receiveTimeoutMs: number;
  readonly #retryMs: { initial: number; max: number };
  readonly #maxBatch: number;
  readonly #maxQueued: number;
  /** Everything before it is delivered (or not published): what the slot may forget. */
  #confirmed: Lsn = 0n;
  /** The end of the last transaction received. */
  #received: Lsn = 0n;
  #pipe: Pipeline | undefined;
  #loop: Promise<void> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  /** When the last status update went out, and the one waiting to (see `#advance`). */
  #statusAt = 0;
  #statusTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #stopSignal!: () => void;
  readonly #stopRequested = new Promise<void>((r) => (this.#stopSignal = r));
  #querySql: Sql | undefined;
  reconnects = 0;

  constructor(opts: CdcOptions) {
    assertSlotName(opts.slot);
    this.#publications = typeof opts.publication === "string" ? [opts.publication] : [...opts.publication];
    if (this.#publications.length === 0) throw new Error("startCdc: no publication");
    this.#publications.forEach(assertPublicationName);
    this.#opts = opts;
    this.#log = (opts.logger ?? createLogger({ level: "info" })).child({ component: "cdc", slot: opts.slot });
    this.#heartbeatMs = opts.heartbeatMs ?? 10_000;
    this.#receiveTimeoutMs = opts.receiveTimeoutMs ?? Math.max(3 * this.#heartbeatMs, 10_000);
    this.#retryMs = { initial: opts.retry?.initialMs ?? 100, max: opts.retry?.maxMs ?? 10_000 };
    this.#maxBatch = opts.maxBatchChanges ?? 1000;
    this.#maxQueued = opts.maxQueuedChanges ?? 10_000;
  }

  get confirmedLsn(): string {
    return formatLsn(this.#confirmed);
  }

  get connected(): boolean {
    return this.#pipe !== undefined && !this.#pipe.dead;
  }

  async start(): Promise<void> {
    let pipe: Pipeline;
    try {
      if (this.#opts.tables) {
        await ensureSlotAndPublication(this.#query(), {
          slot: this.#opts.slot,
          publication: this.#publications[0]!,
          tables: this.#opts.tables,
          replicaIdentityFull: this.#opts.replicaIdentityFull,
        });
      }
      pipe = await this.#openFirst();
    } catch (err) {
      await this.#querySql?.end({ timeout: 1 });
      throw err;
    }
    this.#log.info("cdc streaming", { from: formatLsn(pipe.session.startLsn) });
    this.#loop = this.#run(pipe);
    this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
    this.#heartbeat.unref?.();
  }

  lag(): Promise<number> {
    return slotLag(this.#query(), this.#opts.slot);
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      clearInterval(this.#heartbeat);
      clearTimeout(this.#statusTimer);
      this.#stopSignal();
      const pipe = this.#pipe;
      if (pipe) {
        pipe.wake();
        await pipe.deliverer;
        if (pipe.session.open) {
          this.#sendStatus(pipe.session, false);
          await pipe.session.end();
        }
      }
      await this.#loop;
      await this.#querySql?.end({ timeout: 1 });
      this.#log.info("cdc stopped", { confirmed: this.confirmedLsn });
    })();
    return this.#stopping;
  }

  /** An ordinary connection for the admin queries and `lag()`. */
  #query(): Sql {
    this.#querySql ??= connect(this.#opts.connection, { max: 1, idle_timeout: 30, onnotice: () => {} });
    return this.#querySql;
  }

  async #open(): Promise<Pipeline> {
    const pipe = new Pipeline();
    pipe.session = await ReplicationSession.open(
      this.#opts.connection,
      { slot: this.#opts.slot, publications: this.#publications, after: this.#confirmed },
      (m, session) => this.#onMessage(pipe, m, session),
    );
    this.#confirmed = maxLsn(this.#confirmed, pipe.session.startLsn);
    this.#pipe = pipe;
    pipe.deliverer = this.#deliver(pipe);
    return pipe;
  }

  async #openFirst(): Promise<Pipeline> {
    const deadline = Date.now() + (this.#opts.startTimeoutMs ?? 30_000);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#open();
      } catch (err) {
        if (isPermanent(err) || Date.now() >= deadline) throw err;
        // e.g. 55006: the previous reader's walsender has not let go of the slot yet.
        this.#log.debug("cdc start failed; retrying", { err, attempt });
        await this.#sleep(this.#backoff(attempt));
      }
    }
  }

  /** Follows the connections: when one ends, waits for the callback in flight, then opens the next. */
  async #run(first: Pipeline): Promise<void> {
    let pipe: Pipeline | undefined = first;
    while (pipe) {
      const reason = await pipe.session.closed;
      pipe.dead = true;
      pipe.wake();
      // Reconnecting only after the callback in flight settled makes the new session start past
      // it if it succeeded, so this process never delivers a confirmed transaction twice.
      await pipe.deliverer;
      if (this.#stopped) return;
      // A server error other than a terminated session (57P01) will likely recur: an operator must look.
      const code = (reason as { code?: unknown } | undefined)?.code;
      const serverError = typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && code !== "57P01";
      const fields = { err: reason, confirmed: this.confirmedLsn };
      if (serverError) this.#log.error("cdc connection lost; reconnecting", fields);
      else this.#log.warn("cdc connection lost; reconnecting", fields);
      pipe = await this.#reconnect();
    }
  }

  async #reconnect(): Promise<Pipeline | undefined> {
    for (let attempt = 1; !this.#stopped; attempt++) {
      await this.#sleep(this.#backoff(attempt));
      if (this.#stopped) return undefined;
      try {
        const pipe = await this.#open();
        this.reconnects++;
        this.#log.info("cdc reconnected", { from: formatLsn(pipe.session.startLsn), attempt });
        if (this.#stopped) await pipe.session.end();
        return pipe;
      } catch (err) {
        if (isPermanent(err)) this.#log.error("cdc reconnect failed; retrying", { err, attempt });
        else this.#log.warn("cdc reconnect failed; retrying", { err, attempt });
      }
    }
    return undefined;
  }

  #onMessage(pipe: Pipeline, m: ServerMessage, session: ReplicationSession): void {
    if (m.kind === "keepalive") {
      // Outside a transaction, everything committed before walEnd has been received.
      if (!pipe.assembler?.inTransaction) this.#mark(pipe, m.walEnd);
      if (m.replyRequested) this.#sendStatus(session, false);
      return;
    }
    pipe.assembler ??= new TransactionAssembler(session.database);
    const tx = pipe.assembler.push(parsePgOutput(m.data), m.walStart);
    if (!tx) return;
    this.#received = maxLsn(this.#received, tx.endLsn);
    pipe.queue.push({ kind: "tx", tx });
    pipe.queuedChanges += tx.changes.length;
    if (pipe.queuedChanges >= this.#maxQueued && !pipe.paused) {
      pipe.paused = true;
      session.pause();
      this.#log.debug("cdc consumer behind; pausing the stream", { queuedChanges: pipe.queuedChanges });
    }
    pipe.wake();
  }

  /**
   * A keepalive position: confirmable once everything received before it is. This is what moves
   * the slot past WAL of other tables and databases while the captured tables are quiet.
   */
  #mark(pipe: Pipeline, lsn: Lsn): void {
    const last = pipe.queue.at(-1);
    if (!last) this.#advance(lsn);
    else if (last.kind === "mark") last.lsn = maxLsn(last.lsn, lsn);
    else pipe.queue.push({ kind: "mark", lsn });
  }

  /**
   * Confirms up to `lsn`. The server is told at most every STATUS_MIN_INTERVAL_MS: on a busy
   * database it sends a keepalive position for about every transaction it skips, and a status
   * update (a socket write) for each cost ~2 % of a busy server's CPU. Confirming a little later
   * only keeps that much more WAL for the slot; nothing is delivered twice unless the process
   * dies in that window, which the consumer's idempotence already covers.
   */
  #advance(lsn: Lsn): void {
    if (lsn <= this.#confirmed) return;
    this.#confirmed = lsn;
    if (this.#statusTimer) return;
    const wait = this.#statusAt + STATUS_MIN_INTERVAL_MS - Date.now();
    if (wait <= 0) return this.#sendCurrent();
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined;
      this.#sendCurrent();
    }, wait);
    this.#statusTimer.unref?.();
  }

  #sendCurrent(): void {
    const pipe = this.#pipe;
    if (pipe && !pipe.dead) this.#sendStatus(pipe.session, false);
  }

  #sendStatus(session: ReplicationSession, replyRequested: boolean): void {
    const c = this.#confirmed;
    this.#statusAt = Date.now();
    session.send(standbyStatusUpdate(maxLsn(this.#received, c), c, c, replyRequested));
  }

  /** The heartbeat: report the position and ask for a keepalive, which also proves the connection alive. */
  #beat(): void {
    const pipe = this.#pipe;
    if (!pipe || pipe.dead) return;
    const silentMs = Date.now() - pipe.session.lastMessageAt;
    if (!pipe.paused && silentMs > this.#receiveTimeoutMs) {
      pipe.session.destroy(new Error(`no message from the server for ${silentMs} ms`));
      return;
    }
    this.#sendStatus(pipe.session, !pipe.paused);
  }

  /** Hands queued transactions to the consumer, one batch at a time, confirming after each. */
  async #deliver(pipe: Pipeline): Promise<void> {
    while (!pipe.dead && !this.#stopped) {
      const head = pipe.queue[0];
      if (!head) {
        await pipe.idle();
        continue;
      }
      if (head.kind === "mark") {
        pipe.queue.shift();
        this.#advance(head.lsn);
        continue;
      }
      const { txs, take } = this.#nextBatch(pipe);
      const changes = txs.flatMap((t) => t.changes);
      const last = txs[txs.length - 1]!;
      if (changes.length > 0 && !(await this.#consume(pipe, txs, changes))) return;
      pipe.queue.splice(0, take);
      pipe.queuedChanges -= changes.length;
      this.#advance(last.endLsn);
      if (pipe.paused && pipe.queuedChanges <= this.#maxQueued / 2) {
        pipe.paused = false;
        pipe.session.lastMessageAt = Date.now();
        pipe.session.resume();
        this.#log.debug("cdc consumer caught up; resuming the stream", { queuedChanges: pipe.queuedChanges });
      }
    }
  }

  /** Whole transactions from the head of the queue, up to `maxBatchChanges`; marks between them are superseded. */
  #nextBatch(pipe: Pipeline): { txs: CommittedTransaction[]; take: number } {
    const txs: CommittedTransaction[] = [];
    let changes = 0;
    let take = 0;
    for (let i = 0; i < pipe.queue.length; i++) {
      const item = pipe.queue[i]!;
      if (item.kind !== "tx") continue;
      if (txs.length > 0 && changes + item.tx.changes.length > this.#maxBatch) break;
      txs.push(item.tx);
      changes += item.tx.changes.length;
      take = i + 1;
    }
    return { txs, take };
  }

  /** Calls the consumer until it succeeds; false if the connection or the reader stopped first. */
  async #consume(pipe: Pipeline, txs: CommittedTransaction[], changes: ChangeEvent[]): Promise<boolean> {
    const last = txs[txs.length - 1]!;
    const batch = { commitLsn: formatLsn(last.commitLsn), endLsn: formatLsn(last.endLsn), transactions: txs.length };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#opts.onChanges([...changes], { ...batch, attempt });
        return true;
      } catch (err) {
        this.#log.warn("cdc consumer failed; delivering the batch again", { err, attempt, commitLsn: batch.commitLsn });
        if (pipe.dead || this.#stopped) return false;
        await this.#sleep(this.#backoff(attempt), pipe.session.closed);
        if (pipe.dead || this.#stopped) return false;
      }
    }
  }

  #backoff(attempt: number): number {
    return Math.min(this.#retryMs.max, this.#retryMs.initial * 2 ** (attempt - 1));
  }

  /** Waits `ms`, or less if the reader stops (or `cut` settles). */
  async #sleep(ms: number, cut?: Promise<unknown>): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), this.#stopRequested, ...(cut ? [cut] : [])]);
    clearTimeout(timer);
  }
}

/** Errors a retry cannot fix: setup problems, authentication, privileges, missing objects. */
function isPermanent(err: unknown): boolean {
  if (err instanceof CdcSetupError) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^(28|3D|42)/.test(code);
}
