import type { Sql, TransactionSql } from "postgres";
import type { Bus, EventEnvelope } from "../bus/types.ts";
import { newId } from "../ids.ts";
import type { Logger } from "../observability/logger.ts";
import { assertReplicationRole, decodable, dropSlot, ensurePublication, ensureReplicaIdentityFull, quoteIdent, slotLag } from "./admin.ts";
import { aggregateKey, changeEnvelope, stableEventId } from "./capture-event.ts";
import type { ChangeEvent, Row } from "./change-event.ts";
import { decodeValue } from "./decode-value.ts";
import { startCdc, type CdcReader } from "./reader.ts";
import { connect, type CdcConnection } from "./session.ts";

/** The slot and publication capturing a module's tables: `<schema>_cdc`, e.g. `selaras_catalog_cdc`. */
export function captureSlotName(schema: string): string {
  return `${schema}_cdc`;
}

/** Options of one module's capture on Postgres. */
export interface PgCaptureOptions {
  readonly module: string;
  /** The module's schema, where its tables are. */
  readonly schema: string;
  /** The module's role (owner of its tables). */
  readonly role: string;
  readonly tables: readonly string[];
  /** Sets up the publication and slot, and streams: a superuser, or a role with REPLICATION that owns the tables (see README.md). */
  readonly connection: CdcConnection;
  /** Grant the module's role to a capture role that is not a superuser, so it owns the tables (storage.postgres.provision). */
  readonly grantModuleRole: boolean;
  readonly bus: Bus;
  readonly logger: Logger;
  readonly heartbeatMs: number;
  /** How long a standby waits before looking at the slot again (default 1000). */
  readonly standbyPollMs?: number;
  /** Told how many events each publish put on the bus. */
  readonly onPublished?: (n: number) => void;
}

/**
 * Captures one module's tables from the WAL: a publication and a permanent pgoutput slot named
 * after the module's schema; a snapshot of the tables as of the slot's start (`r` events); then
 * the CDC reader, whose batches are published to the bus before the slot confirms them (at
 * least once; event ids are stable, so the bus drops repeats). One instance streams: the slot
 * admits one reader, the others stand by and take over when it ends.
 */
export class PgCapture {
  readonly slot: string;
  readonly #o: PgCaptureOptions;
  readonly #keys = new Map<string, string[]>();
  #sql: Sql | undefined;
  #reader: CdcReader | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;
  #stopSignal!: () => void;
  readonly #stopRequested = new Promise<void>((r) => (this.#stopSignal = r));

  constructor(opts: PgCaptureOptions) {
    this.#o = opts;
    this.slot = captureSlotName(opts.schema);
  }

  /** Whether this instance streams the slot right now (false while standing by or starting). */
  get streaming(): boolean {
    return this.#reader?.connected ?? false;
  }

  /**
   * Checks the capture role's privileges and sets up (idempotently) the publication of the tables
   * with REPLICA IDENTITY FULL, so a missing privilege fails the start. The slot and the snapshot
   * come in the background (`start`): a change committed before the slot exists is in the snapshot.
   */
  async setup(): Promise<void> {
    const { module, role, schema, tables } = this.#o;
    const sql = (this.#sql = connect(this.#o.connection, { max: 4, idle_timeout: 30, onnotice: () => {} }));
    // The publication and REPLICA IDENTITY need the tables' owner: the module's role.
    await assertReplicationRole(sql, `cannot capture tables of module ${module}`, { ownerRole: role, grant: this.#o.grantModuleRole });
    const refs = tables.map((table) => ({ schema, table }));
    await ensureReplicaIdentityFull(sql, refs);
    await ensurePublication(sql, this.slot, refs);
    for (const table of tables) this.#keys.set(table, await primaryKey(sql, schema, table));
  }

  /** Starts (in the background) the slot and snapshot when due, then the reader; stands by while another instance streams. */
  start(): void {
    this.#loop = this.#run();
  }

  /** Bytes of WAL the slot holds beyond what was confirmed (`selaras_cdc_slot_lag_bytes`); 0 before the slot exists. */
  async lag(): Promise<number> {
    const [s] = await this.#sql!`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
    return s ? slotLag(this.#sql!, this.slot) : 0;
  }

  /** Stops the reader (the batch in flight is published and confirmed first). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopSignal();
    await this.#loop;
    await this.#reader?.stop();
    await this.#sql?.end({ timeout: 1 });
  }

  async #run(): Promise<void> {
    const { logger, standbyPollMs = 1000 } = this.#o;
    let standingBy = false;
    for (let attempt = 1; !this.#stopped; attempt++) {
      try {
        if (await this.#activePid()) {
          if (!standingBy) logger.info("cdc standing by: another reader streams the slot", { slot: this.slot });
          standingBy = true;
          attempt = 0;
          await this.#sleep(standbyPollMs);
          continue;
        }
        if (!(await this.#prepareSlot())) continue; // another instance got there first
        const reader = await startCdc({
          connection: this.#o.connection,
          slot: this.slot,
          publication: this.slot,
          onChanges: (changes) => this.#publishChanges(changes),
          heartbeatMs: this.#o.heartbeatMs,
          startTimeoutMs: 5000,
          retry: { initialMs: 100, maxMs: 5000 },
          logger,
        });
        if (this.#stopped) return void (await reader.stop());
        this.#reader = reader;
        logger.info("cdc capturing", { module: this.#o.module, slot: this.slot, tables: this.#o.tables });
        return; // the reader reconnects by itself from here on
      } catch (err) {
        if (this.#stopped) return;
        const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
        logger.warn("cdc capture could not start; retrying", { slot: this.slot, err, retryInMs: delay });
        await this.#sleep(delay);
      }
    }
  }

  async #activePid(): Promise<number | null> {
    const [s] = await this.#sql!<{ pid: number | null }[]>`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
    return s?.pid ?? null;
  }

  /**
   * Makes the slot ready to stream, under a lock: nothing to do when every table was snapshotted
   * for it; a slot that is missing, or was never snapshotted (a crash midway, a recreated
   * publication), is (re)created with an exported snapshot that is read and published whole
   * first; a table added later is snapshotted alone. The tables done are recorded as the
   * publication's comment, committed after their events were published. False when another
   * instance started streaming meanwhile.
   */
  async #prepareSlot(): Promise<boolean> {
    const { tables, logger } = this.#o;
    return this.#sql!.begin(async (lock) => {
      await lock`SELECT pg_advisory_xact_lock(hashtext(${`selaras-cdc:${this.slot}`}))`;
      const [s] = await lock<{ pid: number | null }[]>`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
      if (s?.pid) return false;
      const done = await this.#readMark(lock);
      if (s && done.length > 0) {
        const missing = tables.filter((t) => !done.includes(t));
        if (missing.length === 0) return true;
        // The slot streams other tables already: read these now. A change committed after the
        // publication took them in but before this read comes again from the stream, later.
        await this.#sql!.begin("isolation level repeatable read", (tx) => this.#publishSnapshot(tx, missing));
        await this.#writeMark(lock, [...done, ...missing]);
        return true;
      }
      // Nothing was ever streamed from a slot without a mark: dropping it loses nothing.
      if (s) await dropSlot(this.#sql!, this.slot, { terminate: false });
      await this.#createSlotWithSnapshot();
      await this.#writeMark(lock, tables);
      logger.info("cdc slot created", { slot: this.slot });
      return true;
    });
  }

  /**
   * Creates the slot with an exported snapshot (replication protocol), reads every table in that
   * very snapshot and publishes it: each row change is then either in the snapshot or streamed
   * from the slot, never both, never neither. A new slot that cannot decode (see admin.ts,
   * `decodable`) is dropped and created again.
   */
  async #createSlotWithSnapshot(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const repl = connect(this.#o.connection, {
        max: 1,
        prepare: false,
        fetch_types: false,
        idle_timeout: 0,
        onnotice: () => {},
        connection: { application_name: "selaras-cdc-snapshot", replication: "database" } as never,
      });
      let retry = false;
      try {
        const [created] = await repl.unsafe<{ snapshot_name: string }[]>(`CREATE_REPLICATION_SLOT ${this.slot} LOGICAL pgoutput (SNAPSHOT 'export')`);
        await this.#sql!.begin("isolation level repeatable read", async (tx) => {
          await tx.unsafe(`SET TRANSACTION SNAPSHOT '${created!.snapshot_name}'`);
          await repl.end({ timeout: 1 }); // imported: the exporting session may go
          if (!(await decodable(this.#sql!, this.slot, this.slot))) {
            retry = attempt < 3;
            if (retry) return;
          }
          await this.#publishSnapshot(tx, this.#o.tables);
        });
      } catch (err) {
        await dropSlot(this.#sql!, this.slot, { terminate: false }).catch(() => {});
        throw err;
      } finally {
        await repl.end({ timeout: 0 }).catch(() => {});
      }
      if (!retry) return;
      await dropSlot(this.#sql!, this.slot, { terminate: false });
    }
  }

  /** One reader batch to the bus; resolving lets the reader confirm it to the slot. */
  async #publishChanges(changes: ChangeEvent[]): Promise<void> {
    const { module, bus } = this.#o;
    const envelopes: EventEnvelope[] = changes.map((c) =>
      changeEnvelope({
        id: stableEventId(c.source.ts_ms, c.source.db, this.slot, c.id),
        op: c.op,
        before: c.before,
        after: c.after,
        key: aggregateKey(c.after ?? c.before, this.#keys.get(c.source.table) ?? [], c.source.table),
        source: { connector: "postgresql", db: c.source.db, schema: c.source.schema, table: c.source.table, module, lsn: c.source.lsn, commitLsn: c.source.commitLsn, txId: c.source.txId, tsMs: c.source.ts_ms, snapshot: false },
      }),
    );
    await bus.publish(envelopes);
    this.#o.onPublished?.(envelopes.length);
  }

  /**
   * Publishes every row of `tables` as seen by `tx` as `r` events (fresh ids: a repeated
   * snapshot is a new read), in pages, with values decoded like the streamed ones.
   */
  async #publishSnapshot(tx: TransactionSql, tables: readonly string[]): Promise<void> {
    const { schema, module, bus, logger } = this.#o;
    // The text forms the walsender uses (session.ts), so snapshot values decode like streamed ones.
    await tx`SELECT set_config('DateStyle', 'ISO, MDY', true), set_config('TimeZone', 'UTC', true), set_config('IntervalStyle', 'postgres', true),
                    set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true)`;
    const [{ db }] = (await tx`SELECT current_database() AS db`) as unknown as [{ db: string }];
    for (const table of tables) {
      const columns = await tx<{ name: string; oid: number }[]>`
        SELECT attname AS name, atttypid::int AS oid FROM pg_attribute
        WHERE attrelid = format('%I.%I', ${schema}::text, ${table}::text)::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`;
      const list = columns.map((c, i) => `${quoteIdent(c.name)}::text AS c${i}`).join(", ");
      const at = Date.now();
      let rows = 0;
      await tx.unsafe(`SELECT ${list} FROM ${quoteIdent(schema)}.${quoteIdent(table)}`).cursor(500, async (batch: Array<Record<string, string | null>>) => {
        const envelopes = batch.map((values) => {
          const row: Row = {};
          columns.forEach((c, i) => {
            const v = values[`c${i}`];
            row[c.name] = v === null || v === undefined ? null : decodeValue(v, c.oid);
          });
          return changeEnvelope({
            id: newId(),
            op: "r",
            before: null,
            after: row,
            key: aggregateKey(row, this.#keys.get(table) ?? [], table),
            source: { connector: "postgresql", db, schema, table, module, lsn: 0, commitLsn: 0, txId: 0, tsMs: at, snapshot: true },
          });
        });
        await bus.publish(envelopes);
        this.#o.onPublished?.(envelopes.length);
        rows += envelopes.length;
      });
      logger.info("cdc snapshot published", { module, table, rows });
    }
  }

  /** The tables snapshotted for the current slot, kept as the publication's comment (empty: none). */
  async #readMark(sql: Sql | TransactionSql): Promise<string[]> {
    const [row] = await sql<{ c: string | null }[]>`SELECT obj_description(oid, 'pg_publication') AS c FROM pg_publication WHERE pubname = ${this.slot}`;
    try {
      return (JSON.parse(row?.c ?? "{}") as { snapshotted?: string[] }).snapshotted ?? [];
    } catch {
      return [];
    }
  }

  async #writeMark(sql: Sql | TransactionSql, snapshotted: readonly string[]): Promise<void> {
    const text = JSON.stringify({ snapshotted }).replace(/'/g, "''");
    await sql.unsafe(`COMMENT ON PUBLICATION ${quoteIdent(this.slot)} IS '${text}'`);
  }

  async #sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), this.#stopRequested]);
    clearTimeout(timer);
  }
}

/** The primary-key columns of a table, in key order (empty without a primary key). */
async function primaryKey(sql: Sql, schema: string, table: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT a.attname AS name FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = format('%I.%I', ${schema}::text, ${table}::text)::regclass AND i.indisprimary
    ORDER BY array_position(i.indkey::int2[], a.attnum)`;
  return rows.map((r) => r.name);
}
