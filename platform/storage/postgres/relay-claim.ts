import postgres, { type Options, type Sql } from "postgres";
import { MARK_DELAY_MS, outboxRowOf, type OutboxRow } from "../module-storage.ts";
import { bunSqlClient, postgresJsClient, type PgClient } from "./client.ts";

/*
 * Why a leader lease and not `FOR UPDATE SKIP LOCKED` alone: with SKIP LOCKED, relay A locks
 * rows 1–500 of a module's outbox and relay B, skipping them, takes 501–1000 and may publish
 * first. An aggregate with events in both batches then reaches the bus out of order, and a
 * failed batch of A is retried after B's later one. Keeping order would need per-aggregate
 * locking on top. One active relay per module (a session advisory lock, held by a dedicated
 * connection) keeps commit order trivially; the others stand by and take over within
 * `retryMs` when the leader's connection ends (crash, kill -9, network loss — the server
 * releases session locks with the session; on a silent network loss, after TCP keepalive).
 */

/** The LISTEN/NOTIFY channel a module's outbox trigger notifies on every commit with events. */
export function outboxChannel(schema: string): string {
  return `selaras_outbox_${schema}`;
}

/** Thrown by a lease whose connection (and so its lock) was lost: stop publishing, claim again. */
export class RelayLeaseLost extends Error {
  override readonly name = "RelayLeaseLost";
}

/**
 * Leadership of one module's relay. Reads and marks go through the lease's own connection and
 * check it is still the session holding the lock: postgres.js silently reconnects a dropped
 * connection, and the new session holds nothing.
 */
export interface RelayLease {
  readonly schema: string;
  /** Unpublished rows in commit (`seq`) order, at most `limit`. */
  readUnpublished(limit: number): Promise<OutboxRow[]>;
  /**
   * Marks every unpublished row up to `seq` as published (they are a prefix: see the outbox
   * triggers) and reads up to `next` unpublished rows after it. The mark holds at once for this
   * lease's reads; it is written `markDelayMs` later with any that came meanwhile (one statement,
   * one commit), or by `flush` or `release` — not a commit per relay batch.
   */
  markPublished(seq: number, at: number, next?: number): Promise<OutboxRow[]>;
  /** Highest seq marked by this lease, written or not (reads start after it). */
  readonly markedUpTo: number;
  /** Writes the marks not yet written now. Returns how many rows that marked. */
  flush(): Promise<number>;
  /** Writes the marks not yet written, gives up leadership (a standby takes over) and closes the connection. */
  release(): Promise<void>;
}

/**
 * Claims the relay leadership of `schema`, waiting as a standby (polling every `retryMs`) while
 * another instance holds it. Opens its own connection from `options` (one per lease), on
 * `client` (see `storage.postgres.client`; default postgres.js).
 * @returns the lease, or undefined when `signal` aborted the wait.
 * @example const lease = await acquireRelayLease(pgOptions, "selaras_orders", { signal });
 */
export async function acquireRelayLease(
  options: Options<{}>,
  schema: string,
  opts: { retryMs?: number; signal?: AbortSignal; client?: "bun" | "postgres.js"; markDelayMs?: number } = {},
): Promise<RelayLease | undefined> {
  // A pool of one connection: the lock belongs to its session, which every statement checks.
  const client = opts.client === "bun" ? await bunSqlClient(options, 1) : postgresJsClient(postgres({ ...options, max: 1, onnotice: () => {} }));
  try {
    for (;;) {
      if (opts.signal?.aborted) break;
      const [row] = await client.query<{ ok: boolean; pid: number }>("SELECT pg_try_advisory_lock(hashtext('selaras.relay'), hashtext($1)) AS ok, pg_backend_pid() AS pid", [schema]);
      if (row!.ok) return new PgRelayLease(client, schema, row!.pid, opts.markDelayMs ?? MARK_DELAY_MS);
      await abortableDelay(opts.retryMs ?? 500, opts.signal);
    }
  } catch (err) {
    await client.end(0).catch(() => {});
    throw err;
  }
  await client.end(0);
  return undefined;
}

/** The columns of an outbox row as `outboxRowOf` reads them (bigints as float8: plain numbers). */
const OUTBOX_COLUMNS = "o.seq::float8 AS seq, o.event_id::text AS event_id, o.aggregate_id, o.type, o.payload, o.headers, o.created_at::float8 AS created_at";

class PgRelayLease implements RelayLease {
  #lost = false;
  readonly #read: string;
  readonly #mark: string;
  /** Highest seq marked by this lease, written or not: reads start after it. */
  #markedUpTo = 0;
  /** Marks not yet written, oldest first: each row gets the time of the first mark covering it. */
  #marks: Array<[seq: number, at: number]> = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: PgClient,
    readonly schema: string,
    private readonly pid: number,
    private readonly markDelayMs: number,
  ) {
    // Schema names are checked identifiers ([a-z0-9_], see moduleSchemaName): safe to quote here.
    const outbox = `"${schema}".selaras_outbox`;
    // Each statement always returns a row (the LEFT JOIN on one row), so the session check below
    // cannot be skipped.
    this.#read = `SELECT pg_backend_pid() AS pid, ${OUTBOX_COLUMNS}
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (SELECT * FROM ${outbox} WHERE seq > $2 AND published_at IS NULL ORDER BY seq LIMIT $1) AS o ON true`;
    // $1, $2: the marks' seqs and times as comma lists (text: read alike by either client),
    // oldest first; each row takes the time of the first mark covering it.
    this.#mark = `WITH m AS (
        SELECT * FROM unnest(string_to_array($1::text, ',')::float8[], string_to_array($2::text, ',')::float8[]) AS m(seq, at)
      ), marked AS (
        UPDATE ${outbox} AS o SET published_at = (SELECT min(m.at) FROM m WHERE m.seq >= o.seq)
        WHERE o.seq <= $3 AND o.published_at IS NULL AND pg_backend_pid() = $4
        RETURNING 1
      )
      SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM marked)::int AS n`;
  }

  async readUnpublished(limit: number): Promise<OutboxRow[]> {
    const rows = await this.#guard(() => this.client.query<{ pid: number } & Record<string, unknown>>(this.#read, [limit, this.#markedUpTo]));
    return rows.filter((r) => r.seq !== null).map(outboxRowOf);
  }

  async markPublished(seq: number, at: number, next = 0): Promise<OutboxRow[]> {
    if (this.#lost) throw new RelayLeaseLost(`relay lease of ${this.schema} is lost or released`);
    if (seq > this.#markedUpTo) {
      this.#markedUpTo = seq;
      this.#marks.push([seq, at]);
      this.#scheduleFlush();
    }
    return next > 0 ? this.readUnpublished(next) : [];
  }

  get markedUpTo(): number {
    return this.#markedUpTo;
  }

  async flush(): Promise<number> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const marks = this.#marks.splice(0);
    if (marks.length === 0) return 0;
    try {
      const [row] = await this.#guard(() =>
        this.client.query<{ pid: number; n: number }>(this.#mark, [marks.map((m) => m[0]).join(","), marks.map((m) => m[1]).join(","), marks[marks.length - 1]![0], this.pid]),
      );
      return row!.n;
    } catch (err) {
      // Not written: with the next write, unless the lease is gone (its successor publishes them
      // again: the same ids, which the bus deduplicates and the inboxes absorb).
      if (!this.#lost) {
        this.#marks.unshift(...marks);
        this.#scheduleFlush();
      }
      throw err;
    }
  }

  /** Writes the pending marks `markDelayMs` from now, unless a write is due already. */
  #scheduleFlush(): void {
    this.#timer ??= setTimeout(() => void this.flush().catch(() => {}), this.markDelayMs);
  }

  async release(): Promise<void> {
    if (!this.#lost) await this.flush().catch(() => undefined);
    clearTimeout(this.#timer);
    if (!this.#lost) {
      this.#lost = true;
      await this.client.query("SELECT pg_advisory_unlock(hashtext('selaras.relay'), hashtext($1))", [this.schema]).catch(() => undefined);
    }
    await this.client.end(0).catch(() => {});
  }

  async #guard<R extends Array<{ pid: number }>>(query: () => Promise<R>): Promise<R> {
    if (this.#lost) throw new RelayLeaseLost(`relay lease of ${this.schema} is lost or released`);
    let rows: R;
    try {
      rows = await query();
    } catch (err) {
      // After a connection error the client may hang on its next query (seen with Bun): never reuse it.
      this.#drop();
      throw new RelayLeaseLost(`relay lease of ${this.schema} lost: ${(err as Error).message}`);
    }
    if (rows[0]?.pid !== this.pid) {
      this.#drop();
      throw new RelayLeaseLost(`relay lease of ${this.schema} lost: the connection was re-established`);
    }
    return rows;
  }

  #drop(): void {
    this.#lost = true;
    void this.client.end(0).catch(() => {});
  }
}

/**
 * Calls `onWake` after every commit that wrote outbox rows in `schema` (within milliseconds),
 * and whenever the listening connection is (re)established — a notification sent while it was
 * down is lost, so the relay must re-read then. Uses one extra connection of `sql`.
 * @returns a function that stops listening.
 */
export async function listenForOutbox(sql: Sql, schema: string, onWake: () => void): Promise<() => Promise<void>> {
  const sub = await sql.listen(outboxChannel(schema), () => onWake(), () => onWake());
  return () => sub.unlisten();
}

function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
