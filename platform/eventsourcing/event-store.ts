import { isDeepStrictEqual } from "node:util";
import { create, createRegistry, fromJsonString, toJsonString, type DescMessage, type MessageInitShape, type MessageShape, type Registry } from "@bufbuild/protobuf";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import { bigint as pgBigint, pgTable, primaryKey as pgPrimaryKey, text as pgText } from "drizzle-orm/pg-core";
import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import type { MigrationSet, ModuleStorage, Tx } from "../module.ts";
import type { PlatformStorage, PlatformTx } from "../storage/module-storage.ts";
import { LruMap } from "../lru.ts";
import { statementsFor, WriteConflict } from "../storage/statements.ts";

/*
 * An event store inside a module's own database: every stream is an ordered list of protobuf
 * events (stored as proto JSON, readable with plain SQL), appended with optimistic concurrency on
 * the stream version, with snapshots so loading a long stream reads the snapshot and the events
 * after it. Appends go through the module's transaction (`Tx`), so they commit atomically with
 * anything else the module writes — its outbox above all.
 */

const sqlite = {
  esEvents: sqliteTable(
    "es_events",
    {
      streamId: text("stream_id").notNull(),
      version: integer("version").notNull(),
      type: text("type").notNull(),
      payload: text("payload").notNull(),
      recordedAt: integer("recorded_at").notNull(),
    },
    (t) => [primaryKey({ columns: [t.streamId, t.version] })],
  ),
  esSnapshots: sqliteTable("es_snapshots", {
    streamId: text("stream_id").primaryKey(),
    version: integer("version").notNull(),
    state: text("state").notNull(),
    takenAt: integer("taken_at").notNull(),
  }),
};
const postgres = {
  esEvents: pgTable(
    "es_events",
    {
      streamId: pgText("stream_id").notNull(),
      version: pgBigint("version", { mode: "number" }).notNull(),
      type: pgText("type").notNull(),
      payload: pgText("payload").notNull(),
      recordedAt: pgBigint("recorded_at", { mode: "number" }).notNull(),
    },
    (t) => [pgPrimaryKey({ columns: [t.streamId, t.version] })],
  ),
  esSnapshots: pgTable("es_snapshots", {
    streamId: pgText("stream_id").primaryKey(),
    version: pgBigint("version", { mode: "number" }).notNull(),
    state: pgText("state").notNull(),
    takenAt: pgBigint("taken_at", { mode: "number" }).notNull(),
  }),
};

const DDL = (bigint: string) => `
CREATE TABLE es_events (
  stream_id TEXT NOT NULL,
  version ${bigint} NOT NULL CHECK (version >= 1),
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  recorded_at ${bigint} NOT NULL,
  PRIMARY KEY (stream_id, version)
);
CREATE TABLE es_snapshots (
  stream_id TEXT PRIMARY KEY,
  version ${bigint} NOT NULL,
  state TEXT NOT NULL,
  taken_at ${bigint} NOT NULL
);
`;

/** The event store's tables, for a module that keeps one. @example migrations: withEventStore(migrations) */
export function withEventStore(set: MigrationSet): MigrationSet {
  const id = "es:0001_event_store";
  return {
    sqlite: [...set.sqlite, { id, sql: DDL("INTEGER") }],
    ...(set.postgres && { postgres: [...set.postgres, { id, sql: DDL("bigint") }] }),
  };
}

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const snapshotOf = q.read<{ version: number; state: string }>((db, t) =>
  db.select({ version: t.esSnapshots.version, state: t.esSnapshots.state }).from(t.esSnapshots).where(eq(t.esSnapshots.streamId, p("streamId"))),
);
const eventsAfter = q.read<{ version: number; type: string; payload: string }>((db, t) =>
  db
    .select({ version: t.esEvents.version, type: t.esEvents.type, payload: t.esEvents.payload })
    .from(t.esEvents)
    .where(and(eq(t.esEvents.streamId, p("streamId")), gt(t.esEvents.version, p("after"))))
    .orderBy(asc(t.esEvents.version)),
);
const appendEvent = q.write((db, t) =>
  db.insert(t.esEvents).values({ streamId: p("streamId"), version: p("version"), type: p("type"), payload: p("payload"), recordedAt: p("recordedAt") }),
);
const putSnapshot = q.write((db, t) =>
  db
    .insert(t.esSnapshots)
    .values({ streamId: p("streamId"), version: p("version"), state: p("state"), takenAt: p("takenAt") })
    .onConflictDoUpdate({
      target: t.esSnapshots.streamId,
      set: { version: sql`excluded.version`, state: sql`excluded.state`, takenAt: sql`excluded.taken_at` },
      setWhere: sql`excluded.version > ${t.esSnapshots.version}`,
    }),
);

/** A stream's current state and the version it is at (0: no events yet). */
export interface Loaded<S> {
  readonly streamId: string;
  readonly state: S;
  readonly version: number;
}

/** How a stream's events fold into its state, and how that state is snapshotted. */
export interface EventStoreOptions<S> {
  /** The event types streams may hold. */
  readonly events: readonly DescMessage[];
  /** The state of a stream with no events. */
  readonly initial: S;
  /** Folds one event into the state. Pure. */
  apply(state: S, event: MessageShape<DescMessage>): S;
  /** A snapshot is written every this many events of a stream (0: never). Default 100. */
  readonly snapshotEvery?: number;
  /** Serialises the state for a snapshot (default JSON). */
  readonly toSnapshot?: (state: S) => string;
  /** Reads a snapshot back (default JSON). */
  readonly fromSnapshot?: (text: string) => S;
  /**
   * Streams whose last loaded or appended state this store keeps in memory (least recently used
   * dropped first; 0: none). Committed events never change, so a load then reads only the events
   * after the kept version — none, when the last append was this store's, as an append's state is
   * kept once it commits — instead of the snapshot and up to `snapshotEvery` events. Another
   * process's appends are read and folded in — unless the storage is its database's sole writer
   * (`PlatformStorage.soleWriter`: a SQLite file this process owns), when a kept stream's load
   * reads nothing at all. That also takes this store to be the only one appending to its streams
   * in this process. An append that conflicts drops its stream's kept state either way. States
   * are kept as snapshot text, so the default is 10,000 when the store snapshots and 0 when
   * `snapshotEvery` is 0 (the state may not snapshot).
   */
  readonly cachedStreams?: number;
}

/**
 * An event store over one module's storage.
 * @example
 * const stock = eventStore(storage, { events: [StockRestockedSchema, ...], initial: { available: 0 }, apply });
 * const s = await stock.load(productId);
 * await storage.transact((tx) => stock.append(tx, s, [{ schema: StockRestockedSchema, value: { quantity: 5n } }]));
 */
export function eventStore<S>(storage: ModuleStorage, opts: EventStoreOptions<S>) {
  const registry: Registry = createRegistry(...opts.events);
  const every = opts.snapshotEvery ?? 100;
  const toSnapshot = opts.toSnapshot ?? ((s: S) => JSON.stringify(s));
  const fromSnapshot = opts.fromSnapshot ?? ((t: string) => JSON.parse(t) as S);
  const capacity = opts.cachedStreams ?? (every > 0 ? 10_000 : 0);
  // A state that does not survive the snapshot round trip (a bigint, a Map, a class) would fail,
  // or silently change, the append that is due for a snapshot — the Nth event of every stream,
  // long after deploy. Say so at start instead, on the initial state.
  if (every > 0 || capacity > 0) {
    let back: unknown;
    try {
      back = fromSnapshot(toSnapshot(opts.initial));
    } catch (err) {
      throw new Error(`event store: the initial state cannot be snapshotted (${(err as Error).message}); give toSnapshot and fromSnapshot, or snapshotEvery: 0 and cachedStreams: 0`, { cause: err });
    }
    if (!isDeepStrictEqual(back, opts.initial)) throw new Error("event store: the initial state does not survive toSnapshot/fromSnapshot unchanged; give toSnapshot and fromSnapshot that round-trip it");
  }
  const decode = (type: string, payload: string): MessageShape<DescMessage> => {
    const schema = registry.getMessage(type);
    if (!schema) throw new Error(`event store: unknown event type ${type} (not in this store's events)`);
    return fromJsonString(schema, payload, { registry });
  };

  // Kept as snapshot text: a state handed out can be changed by its caller, the text cannot.
  const cache = new LruMap<string, { version: number; state: string }>(capacity);
  // Nothing else commits to the file: a kept state is the stream's latest, no events can follow it.
  const soleWriter = (storage as Partial<PlatformStorage>).soleWriter === true;
  /** Keeps a stream's state (loaded, or appended once committed), unless a later one is kept already. */
  const keep = (streamId: string, version: number, state: S) => {
    const kept = cache.get(streamId);
    if (!kept || kept.version < version) cache.set(streamId, { version, state: toSnapshot(state) });
  };

  return {
    /** The stream's state: the kept or latest snapshot, with the events after it folded in. */
    async load(streamId: string): Promise<Loaded<S>> {
      const kept = cache.get(streamId);
      if (kept && soleWriter) return { streamId, state: fromSnapshot(kept.state), version: kept.version };
      const snap = kept ?? (await storage.read(snapshotOf, { streamId }))[0];
      let state = snap ? fromSnapshot(snap.state) : opts.initial;
      let version = snap?.version ?? 0;
      for (const e of await storage.read(eventsAfter, { streamId, after: version })) {
        state = opts.apply(state, decode(e.type, e.payload));
        version = e.version;
      }
      if (capacity > 0 && version !== kept?.version) keep(streamId, version, state);
      return { streamId, state, version };
    },

    /** Every event of a stream, oldest first (for audits and tests). */
    async history(streamId: string): Promise<Array<{ version: number; event: MessageShape<DescMessage> }>> {
      return (await storage.read(eventsAfter, { streamId, after: 0 })).map((e) => ({ version: e.version, event: decode(e.type, e.payload) }));
    },

    /**
     * Appends `events` to the stream right after `loaded.version`, in the caller's transaction.
     * If another append took that version first, the body fails with `WriteConflict` (load again
     * and retry). Returns the state after the events; writes a snapshot when one is due.
     */
    append(tx: Tx, loaded: Loaded<S>, events: ReadonlyArray<{ schema: DescMessage; value: MessageInitShape<DescMessage> }>): Loaded<S> {
      let { state, version } = loaded;
      const now = Date.now();
      for (const e of events) {
        // Refused before anything is written: a stored type `load` cannot decode would make the stream unreadable.
        if (!registry.getMessage(e.schema.typeName)) throw new Error(`event store: cannot append ${e.schema.typeName} to stream ${loaded.streamId}: not one of this store's events`);
        const message = create(e.schema, e.value);
        // A const per event: on Postgres the check runs after the body returned, when `version`
        // has moved on, so a closure over the loop variable would name the wrong version.
        const at = ++version;
        tx.write(
          appendEvent,
          { streamId: loaded.streamId, version: at, type: e.schema.typeName, payload: toJsonString(e.schema, message, { registry }), recordedAt: now },
          {
            ifDuplicate: () => {
              // What was kept is behind: the next load reads the stream again.
              cache.delete(loaded.streamId);
              return new WriteConflict(`stream ${loaded.streamId}: version ${at} was appended concurrently`);
            },
          },
        );
        state = opts.apply(state, message);
        if (every > 0 && version % every === 0) tx.write(putSnapshot, { streamId: loaded.streamId, version, state: toSnapshot(state), takenAt: now });
      }
      // The platform's transactions take callbacks for after the commit; a bare Tx (a test's) does not.
      const after = (tx as Partial<PlatformTx>).afterCommit;
      if (capacity > 0 && events.length > 0 && after) after.call(tx, () => keep(loaded.streamId, version, state));
      return { streamId: loaded.streamId, state, version };
    },
  };
}

/** An event store handle (see `eventStore`). */
export type EventStore<S> = ReturnType<typeof eventStore<S>>;
