import postgres, { type Options, type Sql } from "postgres";
import { outboxRowOf, type OutboxRow } from "../module-storage.ts";

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
  /** Marks every unpublished row up to `seq` as published (they are a prefix: see the outbox triggers). */
  markPublished(seq: number, at: number): Promise<number>;
  /** Gives up leadership (a standby takes over) and closes the connection. */
  release(): Promise<void>;
}

/**
 * Claims the relay leadership of `schema`, waiting as a standby (polling every `retryMs`) while
 * another instance holds it. Opens its own connection from `options` (one per lease).
 * @returns the lease, or undefined when `signal` aborted the wait.
 * @example const lease = await acquireRelayLease(pgOptions, "selaras_orders", { signal });
 */
export async function acquireRelayLease(options: Options<{}>, schema: string, opts: { retryMs?: number; signal?: AbortSignal } = {}): Promise<RelayLease | undefined> {
  const sql = postgres({ ...options, max: 1, onnotice: () => {} });
  try {
    for (;;) {
      if (opts.signal?.aborted) break;
      const [row] = await sql<{ ok: boolean; pid: number }[]>`
        SELECT pg_try_advisory_lock(hashtext('selaras.relay'), hashtext(${schema})) AS ok, pg_backend_pid() AS pid`;
      if (row!.ok) return new PgRelayLease(sql, schema, row!.pid);
      await abortableDelay(opts.retryMs ?? 500, opts.signal);
    }
  } catch (err) {
    await sql.end({ timeout: 0 });
    throw err;
  }
  await sql.end({ timeout: 0 });
  return undefined;
}

class PgRelayLease implements RelayLease {
  #lost = false;

  constructor(
    private readonly sql: Sql,
    readonly schema: string,
    private readonly pid: number,
  ) {}

  async readUnpublished(limit: number): Promise<OutboxRow[]> {
    // One round trip that always returns a row, so the session check cannot be skipped.
    const rows = await this.#guard(() => this.sql<Array<{ pid: number } & Record<string, unknown>>>`
      SELECT pg_backend_pid() AS pid, o.seq::float8 AS seq, o.event_id::text AS event_id, o.aggregate_id, o.type,
             o.payload, o.headers, o.created_at::float8 AS created_at
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (
        SELECT * FROM ${this.sql(this.schema)}.selaras_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ${limit}
      ) AS o ON true`);
    return rows.filter((r) => r.seq !== null).map(outboxRowOf);
  }

  async markPublished(seq: number, at: number): Promise<number> {
    const [row] = await this.#guard(() => this.sql<Array<{ pid: number; n: number }>>`
      WITH marked AS (
        UPDATE ${this.sql(this.schema)}.selaras_outbox SET published_at = ${at}
        WHERE seq <= ${seq} AND published_at IS NULL AND pg_backend_pid() = ${this.pid}
        RETURNING 1
      )
      SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM marked)::int AS n`);
    return row!.n;
  }

  async release(): Promise<void> {
    if (!this.#lost) {
      this.#lost = true;
      await this.sql`SELECT pg_advisory_unlock(hashtext('selaras.relay'), hashtext(${this.schema}))`.catch(() => undefined);
    }
    await this.sql.end({ timeout: 0 });
  }

  async #guard<R extends Array<{ pid: number }>>(query: () => Promise<R>): Promise<R> {
    if (this.#lost) throw new RelayLeaseLost(`relay lease of ${this.schema} is lost or released`);
    let rows: R;
    try {
      rows = await query();
    } catch (err) {
      // After a connection error the client may hang on its next query (seen with Bun): never reuse it.
      this.#lost = true;
      void this.sql.end({ timeout: 0 });
      throw new RelayLeaseLost(`relay lease of ${this.schema} lost: ${(err as Error).message}`);
    }
    if (rows[0]?.pid !== this.pid) {
      this.#lost = true;
      void this.sql.end({ timeout: 0 });
      throw new RelayLeaseLost(`relay lease of ${this.schema} lost: the connection was re-established`);
    }
    return rows;
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
