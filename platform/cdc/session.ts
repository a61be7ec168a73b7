import postgres, { type Options, type Sql } from "postgres";
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { formatLsn, maxLsn, parseLsn, type Lsn } from "./lsn.ts";
import { parseServerMessage, type ServerMessage } from "./replication-protocol.ts";

/** A failure that retrying cannot fix (missing slot, wrong plugin, no privilege): the first start reports it. */
export class CdcSetupError extends Error {
  override readonly name = "CdcSetupError";
}

/** Where and how one session starts streaming. */
export interface SessionStart {
  readonly slot: string;
  readonly publications: readonly string[];
  /** Resume after this position: the reader's confirmed LSN (the server's `confirmed_flush_lsn` if larger). */
  readonly after: Lsn;
}

/**
 * Session settings the value decoding relies on: pgoutput formats values with the walsender's
 * own settings, so they are fixed here rather than inherited from the role or database.
 */
const SESSION_SETTINGS = { DateStyle: "ISO, MDY", TimeZone: "UTC", IntervalStyle: "postgres", extra_float_digits: "3", bytea_output: "hex" };

/**
 * One replication connection (`replication=database`) streaming a slot with START_REPLICATION,
 * on postgres.js's copy-both stream. It never reconnects: when it ends, `closed` resolves and the
 * reader opens a new one from its confirmed position. Everything it reads goes to `onMessage`,
 * in order; an exception there ends the session.
 */
export class ReplicationSession {
  /** Resolves with the reason once the connection is gone (undefined after `end()`). */
  readonly closed: Promise<Error | undefined>;
  /** Milliseconds timestamp of the last message from the server. */
  lastMessageAt = Date.now();
  #done = false;
  #ending = false;
  #resolveClosed!: (err: Error | undefined) => void;

  private constructor(
    private readonly sql: Sql,
    private readonly stream: Duplex,
    /** Where the server resumes: the later of the requested position and the slot's. */
    readonly startLsn: Lsn,
    /** The database the slot belongs to (`source.db` of the events). */
    readonly database: string,
  ) {
    this.closed = new Promise((r) => (this.#resolveClosed = r));
  }

  /** Connects, checks the slot, and starts streaming. Throws `CdcSetupError` for what a retry cannot fix. */
  static async open(connection: CdcConnection, start: SessionStart, onMessage: (m: ServerMessage, session: ReplicationSession) => void): Promise<ReplicationSession> {
    const base = typeof connection === "string" ? {} : connection;
    const sql = connect(connection, {
      max: 1,
      prepare: false,
      fetch_types: false, // a walsender speaks only the simple query protocol
      idle_timeout: 0,
      max_lifetime: null,
      transform: { column: {}, value: {}, row: {} },
      onnotice: () => {},
      connection: { application_name: "selaras-cdc", ...base.connection, ...SESSION_SETTINGS, replication: "database" } as Options<{}>["connection"],
      no_subscribe: true,
    } as Options<{}>);
    try {
      const slot = await checkSlot(sql, start.slot);
      const startLsn = maxLsn(start.after, slot.lsn);
      const pubs = start.publications.map((p) => `"${p}"`).join(",");
      const { stream, early } = await copyBoth(sql, `START_REPLICATION SLOT ${start.slot} LOGICAL ${formatLsn(startLsn)} (proto_version '1', publication_names '${pubs}')`);
      const session = new ReplicationSession(sql, stream, startLsn, slot.database);
      session.#listen(onMessage);
      // The stream may have failed before the line above could listen (see copyBoth).
      if (early.error || stream.destroyed) session.#finish(early.error ?? new Error("the replication stream closed at once"));
      return session;
    } catch (err) {
      await sql.end({ timeout: 0 }).catch(() => {});
      throw err;
    }
  }

  #listen(onMessage: (m: ServerMessage, session: ReplicationSession) => void): void {
    this.stream.on("data", (buf: Buffer) => {
      if (this.#done) return;
      this.lastMessageAt = Date.now();
      try {
        const m = parseServerMessage(buf);
        if (m) onMessage(m, this);
      } catch (err) {
        this.destroy(err as Error);
      }
    });
    const gone = (err: Error) => this.#finish(this.#ending ? undefined : err);
    this.stream.on("error", gone);
    // The server ended the copy (it is shutting down, or answers our CopyDone) or the connection closed.
    this.stream.on("end", () => gone(new Error("the server ended the replication stream")));
    this.stream.on("close", () => gone(new Error("the replication connection closed")));
  }

  /** Whether the connection is still streaming. */
  get open(): boolean {
    return !this.#done;
  }

  /** Writes a message to the server (a standby status update); false once closed. */
  send(buf: Buffer): boolean {
    if (this.#done || this.stream.destroyed) return false;
    this.stream.write(buf);
    return true;
  }

  /** Stops reading (backpressure: the socket fills and the walsender waits). */
  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  /** Drops the connection at once (the reader reconnects if it is not stopping). */
  destroy(reason: Error): void {
    this.#finish(reason);
  }

  /** Ends streaming politely (CopyDone), closing the connection within `timeoutMs` at worst. */
  async end(timeoutMs = 2000): Promise<void> {
    if (!this.#done && !this.stream.destroyed) {
      this.#ending = true;
      this.stream.end();
      await Promise.race([this.closed, new Promise<void>((r) => setTimeout(r, timeoutMs).unref?.())]);
    }
    this.#finish(undefined);
    await this.closed;
  }

  #finish(reason: Error | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.stream.destroy();
    void this.sql.end({ timeout: 0 }).catch(() => {});
    this.#resolveClosed(reason);
  }
}

/**
 * Runs a command that switches the connection to copy-both mode and returns postgres.js's stream.
 *
 * postgres.js resolves the query with the stream and, when an ErrorResponse follows in the same
 * socket read (a decoding error right after START_REPLICATION, seen under load), destroys it
 * before the caller's `await` resumes: the 'error' event then has no listener and becomes an
 * uncaught exception, and the session looks open while it is dead. So a listener is attached
 * at the moment of resolution, by wrapping the query's `resolve` (postgres.js 3.4 internals;
 * without it, the `destroyed` check after the await still catches the dead stream).
 */
async function copyBoth(sql: Sql, command: string): Promise<{ stream: Duplex; early: { error?: Error } }> {
  const early: { error?: Error } = {};
  const query = sql.unsafe(command) as unknown as { resolve?: (v: unknown) => void; writable(): Promise<unknown> };
  const resolve = query.resolve;
  if (typeof resolve === "function") {
    query.resolve = (v) => {
      if (v instanceof EventEmitter || typeof (v as EventEmitter | undefined)?.on === "function") (v as EventEmitter).on("error", (err: Error) => (early.error ??= err));
      resolve(v);
    };
  }
  return { stream: (await query.writable()) as Duplex, early };
}

/** The slot's confirmed position, after checking it exists, decodes with pgoutput, and is this database's. */
async function checkSlot(sql: Sql, slot: string): Promise<{ lsn: Lsn; database: string }> {
  const [row] = await sql.unsafe<{ lsn: string | null; plugin: string | null; database: string | null; here: string }[]>(
    `SELECT confirmed_flush_lsn::text AS lsn, plugin, database, current_database() AS here FROM pg_replication_slots WHERE slot_name = '${slot}'`,
  );
  if (!row) throw new CdcSetupError(`replication slot ${slot} does not exist (create it with ensureSlotAndPublication)`);
  if (row.plugin !== "pgoutput" || row.database !== row.here) {
    throw new CdcSetupError(`replication slot ${slot} is not a pgoutput slot of database ${row.here} (plugin ${row.plugin}, database ${row.database})`);
  }
  return { lsn: row.lsn ? parseLsn(row.lsn) : 0n, database: row.here };
}

/** How to reach Postgres: a URL or postgres.js options (host, port, database, username, password, ssl…). */
export type CdcConnection = string | Options<{}>;

/** A postgres.js client for `connection`, with `overrides` applied. */
export function connect(connection: CdcConnection, overrides: Options<{}>): Sql {
  return typeof connection === "string" ? postgres(connection, overrides) : postgres({ ...connection, ...overrides });
}
