import type { Bus } from "../bus/types.ts";
import { assertLogicalWal, assertReplicationRole, ensurePublication, ensureSlotAndPublication, type TableRef } from "../cdc/admin.ts";
import type { ChangeEvent } from "../cdc/change-event.ts";
import { startCdc, type CdcReader, type ChangeBatch } from "../cdc/reader.ts";
import { connect, type CdcConnection } from "../cdc/session.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { OutboxRow, PlatformStorage } from "../storage/module-storage.ts";
import { OutboxTable } from "./outbox-table.ts";
import { outboxEnvelope, type Relay } from "./relay.ts";

/*
 * Why the relay confirms a slot position only after marking the rows: the slot is where a
 * restart resumes, the `published_at` marks are what the backlog metrics, `settle()` and pruning
 * read. Publish → mark → confirm keeps "confirmed ⇒ marked ⇒ on the bus", so after any restart
 * or takeover the rows still unmarked are exactly the ones that may not have been published.
 * Published rows stay a prefix of `seq` (commit order, see the outbox triggers), so "is this
 * streamed row published already?" is one range query (outbox-table.ts) — asked for the first
 * batches of each replication session (a crash between mark and confirm, another instance
 * streaming meanwhile, the start-up catch-up) until a batch holds a row nobody published; from
 * then on the session streams only new rows and no query is needed.
 */

/** The slot and publication streaming a module's outbox inserts: `<schema>_outbox`, e.g. `selaras_orders_outbox`. */
export function outboxSlotName(schema: string): string {
  return `${schema}_outbox`;
}

/** Options of one module's WAL relay. */
export interface CdcRelayOptions {
  readonly module: string;
  /** The module's schema, where `selaras_outbox` is. */
  readonly schema: string;
  /** The module's role: it owns the outbox, which the publication needs. */
  readonly role: string;
  /** The module's storage: the catch-up read, the `published_at` marks, slot state and lag. */
  readonly storage: PlatformStorage;
  /** Creates the publication and the slot, and streams: REPLICATION or superuser (`cdc.postgres.url`, else the administrator). */
  readonly connection: CdcConnection;
  /** Make a replication role that is not a superuser a member of the module's role (storage.postgres.provision). */
  readonly grantModuleRole: boolean;
  readonly bus: Bus;
  /** Rows per publish at most (`outbox.batchSize`). */
  readonly batchSize: number;
  /** Position reports and liveness checks of the replication connection (`cdc.heartbeatMs`). */
  readonly heartbeatMs: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** How often a standby looks whether the slot is free (default 500, like the polling relay's lease). */
  readonly standbyPollMs?: number;
}

/**
 * Publishes one module's committed outbox rows to the bus as they appear in the WAL, read from a
 * permanent logical replication slot (insert-only publication of `selaras_outbox`), instead of
 * reading the table when woken. Same guarantees as `OutboxRelay`: commit order (the WAL's), each
 * batch on the bus before its rows are marked published and before the slot position is
 * confirmed, event id as the bus's dedup key. The slot admits one reader: other instances stand
 * by and take over when it ends. See docs/adr/0013-outbox-relay-from-the-wal.md.
 */
export class CdcOutboxRelay implements Relay {
  readonly slot: string;
  readonly module: string;
  readonly #o: CdcRelayOptions;
  readonly #table: TableRef;
  readonly #outbox: OutboxTable;
  #reader: CdcReader | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;
  #stopSignal!: () => void;
  readonly #stopRequested = new Promise<void>((r) => (this.#stopSignal = r));
  #caughtUp = false;
  #openGate!: () => void;
  /** Streamed batches wait for the start-up catch-up: rows from before the slot go first. */
  readonly #gate = new Promise<void>((r) => (this.#openGate = r));
  /** `reader.reconnects` of the session known to stream only unpublished rows (-1: none yet). */
  #verifiedSession = -1;
  /** Highest `seq` this instance published and marked. */
  #publishedThrough = 0;
  readonly #progress = new Set<() => void>();
  readonly #lag: { observe(v: number): void };
  readonly #published: { inc(n: number): void };

  constructor(opts: CdcRelayOptions) {
    this.#o = opts;
    this.module = opts.module;
    this.slot = outboxSlotName(opts.schema);
    this.#table = { schema: opts.schema, table: "selaras_outbox" };
    this.#outbox = new OutboxTable(opts.storage, opts.schema, opts.logger);
    this.#lag = opts.metrics.relayLag.labels({ module: opts.module });
    this.#published = opts.metrics.eventsPublished.labels({ module: opts.module });
  }

  /** Whether this instance streams the slot right now (false while standing by or starting). */
  get streaming(): boolean {
    return this.#reader?.connected ?? false;
  }

  /**
   * Checks what a retry cannot fix — `wal_level = logical`, a role that may replicate — and
   * creates (idempotently) the insert-only publication, so a misconfiguration fails the start.
   * The slot is created in the background (`start`), where creating it may wait for running
   * transactions; rows committed before it exists are published by the catch-up.
   */
  async setup(): Promise<void> {
    const { module, role } = this.#o;
    const sql = connect(this.#o.connection, { max: 1, idle_timeout: 5, onnotice: () => {} });
    try {
      await assertLogicalWal(sql, `outbox.relay = "cdc" (module ${module})`, 'use outbox.relay = "poll"');
      await assertReplicationRole(sql, `cannot relay the outbox of module ${module} from the WAL (outbox.relay = "cdc")`, { ownerRole: role, grant: this.#o.grantModuleRole });
      await ensurePublication(sql, this.slot, [this.#table], ["insert"]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  }

  start(): void {
    this.#loop = this.#run();
  }

  /** Resolves once every row unpublished when called is published (by this instance or the one streaming). */
  async drained(): Promise<void> {
    const target = await this.#outbox.lastUnpublished();
    if (target === undefined) return;
    while (!this.#stopped && this.#publishedThrough < target) {
      if (!(await this.#outbox.isUnpublished(target))) return;
      await this.#progressOrTimeout(100);
    }
  }

  /** Publishes what is left (bounded by `timeoutMs`) when this instance streams, then lets the batch in flight finish and closes the slot's connection. */
  async stop(timeoutMs = 5000): Promise<void> {
    const { logger, storage } = this.#o;
    if (this.streaming) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
      const drained = await Promise.race([this.drained().then(() => true, () => false), timeout]);
      clearTimeout(timer);
      if (drained) logger.info("outbox relay flushed", { module: this.module });
      else {
        const { backlog } = await storage.outboxStats().catch(() => ({ backlog: -1 }));
        logger.warn("outbox relay stopped before the outbox was drained; the rest is published by the next start", { module: this.module, backlog, timeoutMs });
      }
    }
    this.#stopped = true;
    this.#stopSignal();
    await this.#loop;
    await this.#reader?.stop();
  }

  /** Bytes of WAL the slot holds beyond what was published and confirmed (0 before it exists). */
  async slotLag(): Promise<number> {
    const [row] = await this.#o.storage.queryRaw<{ lag: number | null }>(
      "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag FROM pg_replication_slots WHERE slot_name = ?",
      [this.slot],
    );
    return row?.lag ?? 0;
  }

  /** Stands by while another instance streams; creates the slot if missing; streams; catches up; then lets streamed batches through. */
  async #run(): Promise<void> {
    const { logger, standbyPollMs = 500 } = this.#o;
    let standingBy = false;
    const standBy = async () => {
      if (!standingBy) logger.info("outbox relay standing by: another instance streams the slot", { module: this.module, slot: this.slot });
      standingBy = true;
      await this.#sleep(standbyPollMs);
    };
    for (let attempt = 1; !this.#stopped; attempt++) {
      try {
        const [slot] = await this.#o.storage.queryRaw<{ pid: number | null }>("SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = ?", [this.slot]);
        if (slot?.pid) {
          attempt = 0;
          await standBy();
          continue;
        }
        if (!slot) await this.#createSlot();
        const reader = await startCdc({
          connection: this.#o.connection,
          slot: this.slot,
          publication: this.slot,
          onChanges: (changes, batch) => this.#onChanges(changes, batch),
          heartbeatMs: this.#o.heartbeatMs,
          maxBatchChanges: this.#o.batchSize,
          // Failures to start are retried here, where a slot taken by another instance means "stand by".
          startTimeoutMs: 0,
          retry: { initialMs: 50, maxMs: 5000 },
          logger,
        });
        if (this.#stopped) return void (await reader.stop());
        this.#reader = reader;
        logger.info("outbox relay streaming from the WAL", { module: this.module, slot: this.slot });
        await this.#catchUp();
        if (this.#stopped) return;
        this.#caughtUp = true;
        this.#openGate();
        return; // the reader reconnects by itself from here on
      } catch (err) {
        if (this.#stopped) return;
        // 55006: the slot is active — another instance got there first, or our previous walsender is still letting go.
        if ((err as { code?: unknown }).code === "55006") {
          attempt = 0;
          await standBy();
          continue;
        }
        const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
        logger.warn("outbox relay could not start streaming; retrying", { module: this.module, slot: this.slot, err, retryInMs: delay });
        await this.#sleep(delay);
      }
    }
  }

  async #createSlot(): Promise<void> {
    const sql = connect(this.#o.connection, { max: 1, idle_timeout: 5, onnotice: () => {} });
    try {
      const spec = { slot: this.slot, publication: this.slot, tables: [this.#table], replicaIdentityFull: false, publish: ["insert"] as const };
      if ((await ensureSlotAndPublication(sql, spec)).slotCreated) this.#o.logger.info("outbox relay slot created", { module: this.module, slot: this.slot });
    } finally {
      await sql.end({ timeout: 1 });
    }
  }

  /**
   * Publishes the rows that were unpublished when streaming started — those committed before the
   * slot existed, or left by a relay that stopped — in `seq` order. Rows committed later come
   * from the stream (which skips what this published). Retries until done or stopped.
   */
  async #catchUp(): Promise<void> {
    const { batchSize, logger } = this.#o;
    let through: number | undefined;
    for (let failures = 0; !this.#stopped; ) {
      try {
        through ??= await this.#outbox.maxSeq();
        if (through === 0) return;
        const rows = await this.#outbox.unpublished(through, batchSize);
        if (rows.length === 0) return;
        await this.#publish(rows);
        failures = 0;
      } catch (err) {
        if (this.#stopped) return;
        const delay = Math.min(5000, 50 * 2 ** Math.min(++failures, 7));
        logger.warn("outbox relay could not publish; retrying", { module: this.module, err, retryInMs: delay });
        await this.#sleep(delay);
      }
    }
  }

  /** One reader batch: resolving lets the reader confirm it to the slot; throwing delivers it again. */
  async #onChanges(changes: ChangeEvent[], batch: ChangeBatch): Promise<void> {
    if (!this.#caughtUp) {
      await Promise.race([this.#gate, this.#stopRequested]);
      if (!this.#caughtUp) throw new Error(`outbox relay of module ${this.module} is stopping`);
    }
    let rows = changes.filter((c) => c.op === "c" && c.source.table === this.#table.table && c.source.schema === this.#table.schema).map(streamedRow);
    if (rows.length === 0) return;
    const session = this.#reader!.reconnects;
    if (batch.attempt > 1 || session !== this.#verifiedSession) {
      rows = await this.#outbox.notYetPublished(rows);
      if (rows.length === 0) return;
      this.#verifiedSession = session;
    }
    await this.#publish(rows);
  }

  /** Bus first, then the mark (every row up to the last one: they are all committed and ordered before it). */
  async #publish(rows: OutboxRow[]): Promise<void> {
    await this.#o.bus.publish(rows.map((r) => outboxEnvelope(this.module, r)));
    const now = Date.now();
    const through = Math.max(...rows.map((r) => r.seq));
    await this.#outbox.markPublished(through, now);
    for (const r of rows) this.#lag.observe((now - r.created_at) / 1000);
    this.#published.inc(rows.length);
    this.#publishedThrough = Math.max(this.#publishedThrough, through);
    for (const wake of [...this.#progress]) wake();
  }

  #progressOrTimeout(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#progress.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#progress.add(done);
    });
  }

  async #sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), this.#stopRequested]);
    clearTimeout(timer);
  }
}

/** An outbox row as pgoutput streamed it (decoded by the CDC reader: int8 as number, bytea as base64). */
function streamedRow(c: ChangeEvent): OutboxRow {
  const a = c.after!;
  return {
    seq: Number(a.seq),
    event_id: a.event_id as string,
    aggregate_id: a.aggregate_id as string,
    type: a.type as string,
    payload: new Uint8Array(Buffer.from(a.payload as string, "base64")),
    headers: a.headers as string,
    created_at: Number(a.created_at),
  };
}


