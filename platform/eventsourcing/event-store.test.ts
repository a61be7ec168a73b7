import { rmSync } from "node:fs";
import { isMessage, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Int32ValueSchema, Int64ValueSchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { and, eq, lte, sql } from "drizzle-orm";
import { bigint, pgTable, text as pgText } from "drizzle-orm/pg-core";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDataDir } from "../../test/support/platform.ts";
import { dropPgPrefix, pgStorageConfig, randomPgPrefix } from "../../test/support/postgres.ts";
import { PlatformConfigSchema } from "../config/schema.ts";
import { defineModule, type ModuleStorage, type Tx } from "../module.ts";
import type { PlatformStorage } from "../storage/module-storage.ts";
import { openModuleStorage } from "../storage/open.ts";
import { outcome, testStorageDeps } from "../storage/storage.conformance.ts";
import { statementsFor } from "../storage/statements.ts";
import { eventStore, withEventStore, type EventStoreOptions, type Loaded } from "./event-store.ts";

// A counter stream over well-known wrapper types: Int64Value adds, Int32Value subtracts,
// StringValue renames. Enough to tell event order, snapshots and folds apart.

interface Counter {
  readonly total: number;
  readonly events: number;
  readonly label: string;
  /** Every value seen, in order: a fold that loses or reorders an event shows here. */
  readonly trail: readonly number[];
}
const INITIAL: Counter = { total: 0, events: 0, label: "", trail: [] };

function apply(s: Counter, e: MessageShape<DescMessage>): Counter {
  const next = { ...s, events: s.events + 1 };
  if (isMessage(e, Int64ValueSchema)) return { ...next, total: s.total + Number(e.value), trail: [...s.trail, Number(e.value)] };
  if (isMessage(e, Int32ValueSchema)) return { ...next, total: s.total - e.value, trail: [...s.trail, 0 - e.value] }; // 0 - x: no -0, which JSON cannot hold
  if (isMessage(e, StringValueSchema)) return { ...next, label: e.value };
  throw new Error(`unexpected event ${e.$typeName}`);
}

type NewEvent = { schema: DescMessage; value: MessageInitShape<DescMessage> };
const add = (n: number): NewEvent => ({ schema: Int64ValueSchema, value: { value: BigInt(n) } });
const sub = (n: number): NewEvent => ({ schema: Int32ValueSchema, value: { value: n } });
const rename = (label: string): NewEvent => ({ schema: StringValueSchema, value: { value: label } });

const options = (snapshotEvery?: number): EventStoreOptions<Counter> => ({
  events: [Int64ValueSchema, Int32ValueSchema, StringValueSchema],
  initial: INITIAL,
  apply,
  ...(snapshotEvery !== undefined && { snapshotEvery }),
});

// A business table next to the event store, to show an append commits (or not) with the rest of its body.
const tables = {
  sqlite: {
    notes: sqliteTable("notes", { id: text("id").primaryKey() }),
    esEvents: sqliteTable("es_events", { streamId: text("stream_id").notNull(), version: integer("version").notNull() }),
  },
  postgres: {
    notes: pgTable("notes", { id: pgText("id").primaryKey() }),
    esEvents: pgTable("es_events", { streamId: pgText("stream_id").notNull(), version: bigint("version", { mode: "number" }).notNull() }),
  },
};
const p = sql.placeholder;
const q = statementsFor(tables);
const insertNote = q.write((db, t) => db.insert(t.notes).values({ id: p("id") }));
const allNotes = q.read<{ id: string }>((db, t) => db.select().from(t.notes).orderBy(t.notes.id));
// Test-only: throws away a stream's events up to a version, to prove a load does not need them.
const dropEventsUpTo = q.write((db, t) => db.delete(t.esEvents).where(and(eq(t.esEvents.streamId, p("streamId")), lte(t.esEvents.version, p("version")))));

const testModule = defineModule({
  name: "es",
  migrations: withEventStore({
    sqlite: [{ id: "0001_notes", sql: "CREATE TABLE notes (id TEXT PRIMARY KEY)" }],
    postgres: [{ id: "0001_notes", sql: "CREATE TABLE notes (id text PRIMARY KEY)" }],
  }),
  start: () => ({}),
});

/** Where the test module's storage lives; `open` again is one more process on the same data. */
interface Home {
  open(): Promise<PlatformStorage>;
  dispose(): Promise<void>;
}

/** `owned`: opened as the platform opens the files it owns (`PlatformStorage.soleWriter`). */
function sqliteHome(opts: { owned?: boolean } = {}): Home {
  const dataDir = tempDataDir();
  const opened: PlatformStorage[] = [];
  return {
    async open() {
      const s = (await openModuleStorage(PlatformConfigSchema.parse({ dataDir }), [testModule], { ...testStorageDeps(), owned: opts.owned })).get("es")!;
      opened.push(s);
      return s;
    },
    async dispose() {
      for (const s of opened) await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function postgresHome(): Home {
  const prefix = randomPgPrefix();
  const opened: PlatformStorage[] = [];
  return {
    async open() {
      const s = (await openModuleStorage(PlatformConfigSchema.parse({ storage: pgStorageConfig(prefix) }), [testModule], testStorageDeps())).get("es")!;
      opened.push(s);
      return s;
    },
    async dispose() {
      for (const s of opened) await s.close();
      await dropPgPrefix(prefix);
    },
  };
}

/** The storage with every row its reads return counted, per table read, and the reads themselves. */
function counting(storage: ModuleStorage) {
  const rows = { total: 0, reads: 0 };
  const wrapped: ModuleStorage = {
    ...storage,
    module: storage.module,
    dialect: storage.dialect,
    read: async (query, values) => {
      const got = await storage.read(query, values);
      rows.total += got.length;
      rows.reads++;
      return got;
    },
    transact: (body) => storage.transact(body),
    queryRaw: (text, params) => storage.queryRaw(text, params),
  };
  return { storage: wrapped, rows };
}

for (const [dialect, makeHome] of [
  ["SQLite", sqliteHome],
  ["Postgres", postgresHome],
] as const) {
  describe(`event store on ${dialect}`, () => {
    let home: Home;
    let storage: PlatformStorage;
    beforeEach(async () => {
      home = makeHome();
      storage = await home.open();
    });
    afterEach(() => home.dispose());

    /** Appends `events` in batches (each its own transaction), as a fresh load each time. */
    async function appendAll(store: ReturnType<typeof eventStore<Counter>>, streamId: string, batches: readonly NewEvent[][]): Promise<Loaded<Counter>> {
      let last!: Loaded<Counter>;
      for (const batch of batches) {
        const loaded = await store.load(streamId);
        last = await storage.transact((tx) => store.append(tx, loaded, batch));
      }
      return last;
    }
    /** The state from folding every stored event from the start (no snapshot). */
    async function fullFold(store: ReturnType<typeof eventStore<Counter>>, streamId: string) {
      const events = await store.history(streamId);
      return { state: events.reduce((s, e) => apply(s, e.event), INITIAL), version: events.at(-1)?.version ?? 0 };
    }
    const snapshots = (streamId: string) => storage.queryRaw<{ version: number; state: string }>("SELECT version, state FROM es_snapshots WHERE stream_id = ?", [streamId]);
    const eventRows = async (streamId: string) => Number((await storage.queryRaw<{ n: number }>("SELECT count(*) AS n FROM es_events WHERE stream_id = ?", [streamId]))[0]!.n);

    it("loads an empty stream as the initial state at version 0, appends in order and loads back what was appended", async () => {
      const store = eventStore(storage, options());
      const empty = await store.load("s1");
      expect(empty).toEqual({ streamId: "s1", state: INITIAL, version: 0 });

      const after = await storage.transact((tx) => store.append(tx, empty, [add(5), rename("kopi"), sub(2)]));
      expect(after).toEqual({ streamId: "s1", state: { total: 3, events: 3, label: "kopi", trail: [5, -2] }, version: 3 });
      expect(await store.load("s1")).toEqual(after);

      const next = await storage.transact((tx) => store.append(tx, after, [add(10)]));
      expect(next.version).toBe(4);
      expect(await store.load("s1")).toEqual({ streamId: "s1", state: { total: 13, events: 4, label: "kopi", trail: [5, -2, 10] }, version: 4 });
      const history = await store.history("s1");
      expect(history.map((h) => [h.version, h.event.$typeName])).toEqual([
        [1, "google.protobuf.Int64Value"],
        [2, "google.protobuf.StringValue"],
        [3, "google.protobuf.Int32Value"],
        [4, "google.protobuf.Int64Value"],
      ]);
      // Streams are independent; an append of nothing writes nothing.
      expect(await store.load("s2")).toEqual({ streamId: "s2", state: INITIAL, version: 0 });
      expect(await storage.transact((tx) => store.append(tx, next, []))).toEqual(next);
      expect(await eventRows("s1")).toBe(4);
    });

    it("takes a snapshot every N events, also inside one append; snapshot plus later events equals the full fold", async () => {
      const store = eventStore(storage, options(10));
      // Batches of 4, 7 (crosses 10), 3, 11 (crosses 20: 24 events), then 1.
      const batches = [4, 7, 3, 11, 1].map((n, b) => Array.from({ length: n }, (_, i) => (i % 5 === 4 ? sub(b + i) : i % 7 === 6 ? rename(`l${b}.${i}`) : add(b * 100 + i))));
      const last = await appendAll(store, "s", batches);
      expect(last.version).toBe(26);

      const [snap] = await snapshots("s");
      expect(Number(snap!.version)).toBe(20);
      const folded = await fullFold(store, "s");
      const firstTwenty = (await store.history("s")).slice(0, 20).reduce((s, e) => apply(s, e.event), INITIAL);
      expect(JSON.parse(snap!.state)).toEqual(firstTwenty);
      expect(await store.load("s")).toEqual({ streamId: "s", ...folded });
      expect(last).toEqual({ streamId: "s", ...folded });

      // A store that never snapshots agrees, and writes no snapshot of a new stream.
      const plain = eventStore(storage, options(0));
      expect(await plain.load("s")).toEqual({ streamId: "s", ...folded });
      await appendAll(plain, "t", [Array.from({ length: 12 }, (_, i) => add(i))]);
      expect(await snapshots("t")).toEqual([]);
    });

    it("loads a long stream from its snapshot and the events after it, without the events before it", async () => {
      const store = eventStore(storage, options(100));
      const batches = Array.from({ length: 25 }, (_, b) => Array.from({ length: 10 }, (_, i) => ((b + i) % 3 === 0 ? sub(i) : add(b * 10 + i))));
      const last = await appendAll(store, "long", batches);
      expect(last.version).toBe(250);
      const folded = await fullFold(store, "long");
      expect(folded.state.events).toBe(250);

      const counted = counting(storage);
      expect(await eventStore(counted.storage, options(100)).load("long")).toEqual({ streamId: "long", ...folded });
      expect(counted.rows.total).toBe(1 + 50); // the snapshot at 200, then events 201..250

      // The events the snapshot covers are not needed at all.
      await storage.transact((tx: Tx) => tx.write(dropEventsUpTo, { streamId: "long", version: 200 }));
      expect(await eventRows("long")).toBe(50);
      const reloaded = await store.load("long");
      expect(reloaded).toEqual({ streamId: "long", ...folded });
      // And appending goes on from there.
      const more = await storage.transact((tx) => store.append(tx, reloaded, [add(1)]));
      expect(await store.load("long")).toEqual(more);
      expect(more.version).toBe(251);
    });

    it("keeps loaded streams: a load reads only the events after the kept version, including another process's appends", async () => {
      const other = await home.open();
      const writer = eventStore(other, options(100));
      await appendAll(writer, "kept", [Array.from({ length: 30 }, (_, i) => add(i))]);

      const counted = counting(storage);
      const store = eventStore(counted.storage, options(100));
      const first = await store.load("kept");
      expect(first.version).toBe(30);
      expect(counted.rows.total).toBe(30); // no snapshot yet: every event

      counted.rows.total = 0;
      expect(await store.load("kept")).toEqual(first);
      expect(counted.rows.total).toBe(0); // nothing after version 30

      // Another process appends; this store reads just those, and agrees with a full fold.
      await appendAll(writer, "kept", [[add(100), rename("dua")]]);
      counted.rows.total = 0;
      const after = await store.load("kept");
      expect(counted.rows.total).toBe(2);
      expect(after).toEqual({ streamId: "kept", ...(await fullFold(writer, "kept")) });

      // A caller changing the state it was handed does not change the next load.
      (after.state.trail as number[]).push(999);
      expect((await store.load("kept")).state.trail).not.toContain(999);

      // cachedStreams: 0 reads the snapshot row and the events after it every time.
      const uncached = counting(storage);
      const plain = eventStore(uncached.storage, { ...options(100), cachedStreams: 0 });
      await plain.load("kept");
      await plain.load("kept");
      expect(uncached.rows.total).toBe(2 * 32);
    });

    it("keeps what its own append committed: the next load reads no events; an append whose body failed keeps nothing", async () => {
      const counted = counting(storage);
      const store = eventStore(counted.storage, options(100));
      const first = await storage.transact((tx) => store.append(tx, { streamId: "own", state: INITIAL, version: 0 }, [add(1), add(2)]));
      counted.rows.total = 0;
      expect(await store.load("own")).toEqual(first);
      expect(counted.rows.total).toBe(0);

      // The body fails after the append: the load still answers the committed state, and reads
      // nothing, as nothing new committed.
      const failed = await outcome(
        storage.transact((tx) => {
          store.append(tx, first, [add(40)]);
          throw new Error("after the append");
        }),
      );
      expect(failed).toBe("Error: after the append");
      expect(await store.load("own")).toEqual(first);
      expect(counted.rows.total).toBe(0);

      // A load racing an append (it may read the new event, or not) does not put an older state back.
      const second = await storage.transact((tx) => store.append(tx, first, [sub(1)]));
      const [third] = await Promise.all([storage.transact((tx) => store.append(tx, second, [rename("x")])), store.load("own")]);
      counted.rows.total = 0;
      expect(await store.load("own")).toEqual(third);
      expect(counted.rows.total).toBe(0);
      expect(third).toEqual({ streamId: "own", ...(await fullFold(store, "own")) });
    });

    for (const together of [false, true]) {
      it(`fails the second of two appends from the same version with WriteConflict and writes nothing of its body (${together ? "one group commit" : "one after the other"})`, async () => {
        const store = eventStore(storage, options(2));
        await appendAll(store, "c", [[add(1)]]);
        const [a, b] = [await store.load("c"), await store.load("c")];
        // Each body also writes a business row and an event; b's append would also take a snapshot (version 2).
        const body = (loaded: Loaded<Counter>, note: string, events: NewEvent[]) => (tx: Tx) => {
          tx.write(insertNote, { id: note });
          tx.publish(StringValueSchema, "c", { value: note });
          return store.append(tx, loaded, events).version;
        };
        const bodies = [body(a, "a", [add(10)]), body(b, "b", [add(20), add(30)])];
        const results = together
          ? await Promise.all(bodies.map((fn) => outcome(storage.transact(fn))))
          : [await outcome(storage.transact(bodies[0]!)), await outcome(storage.transact(bodies[1]!))];
        expect(results).toEqual(["ok 2", "WriteConflict: stream c: version 2 was appended concurrently"]);

        expect(await store.load("c")).toEqual({ streamId: "c", state: { total: 11, events: 2, label: "", trail: [1, 10] }, version: 2 });
        expect(await eventRows("c")).toBe(2);
        expect((await storage.read(allNotes)).map((n) => n.id)).toEqual(["a"]);
        expect((await storage.readUnpublished(10)).map((r) => r.aggregate_id)).toEqual(["c"]);
        const [snap] = await snapshots("c");
        expect([Number(snap!.version), JSON.parse(snap!.state).trail]).toEqual([2, [1, 10]]);

        // The loser loads again and succeeds.
        const retried = await storage.transact(body(await store.load("c"), "b", [add(20), add(30)]));
        expect(retried).toBe(4);
        expect((await store.load("c")).state.trail).toEqual([1, 10, 20, 30]);
      });
    }

    it("lets exactly one of many concurrent appends from one version win, from two processes of one module", async () => {
      const other = await home.open();
      const stores = [eventStore(storage, options(3)), eventStore(other, options(3))];
      const loaded = await stores[0]!.load("race");
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => outcome([storage, other][i % 2]!.transact((tx) => stores[i % 2]!.append(tx, loaded, [add(i + 1), add(100)]).version))),
      );
      expect(results.filter((r) => r === "ok 2")).toHaveLength(1);
      expect(results.filter((r) => r.startsWith("WriteConflict:"))).toHaveLength(7);
      const winner = results.indexOf("ok 2") + 1;
      expect(await stores[1]!.load("race")).toEqual({ streamId: "race", state: { total: winner + 100, events: 2, label: "", trail: [winner, 100] }, version: 2 });
      expect(await eventRows("race")).toBe(2);
    });

    it("refuses at creation a state the snapshot would not round-trip, unless it snapshots it itself or never", () => {
      expect(() => eventStore(storage, { ...options(), initial: { ...INITIAL, total: 0n } as never })).toThrow(/initial state cannot be snapshotted/);
      expect(() => eventStore(storage, { ...options(), initial: { ...INITIAL, trail: new Map() } as never })).toThrow(/does not survive toSnapshot\/fromSnapshot/);
      expect(() => eventStore(storage, { ...options(0), initial: { ...INITIAL, total: 0n } as never })).not.toThrow();
      const custom = { toSnapshot: (s: Counter) => JSON.stringify({ ...s, total: String(s.total) }), fromSnapshot: (t: string) => ({ ...JSON.parse(t), total: BigInt(JSON.parse(t).total) }) };
      expect(() => eventStore(storage, { ...options(), initial: { ...INITIAL, total: 0n } as never, ...(custom as object) })).not.toThrow();
    });

    it("refuses to append an event type it could not load back, writing nothing of the body; names an unknown type on load", async () => {
      const narrow = eventStore(storage, { ...options(), events: [Int64ValueSchema] });
      const empty = await narrow.load("u");
      const refused = await outcome(storage.transact((tx) => (tx.write(insertNote, { id: "u" }), narrow.append(tx, empty, [add(1), rename("x")]))));
      expect(refused).toMatch(/cannot append google\.protobuf\.StringValue to stream u/);
      expect(await eventRows("u")).toBe(0);
      expect(await storage.read(allNotes)).toEqual([]);

      // Written by a store that knows the type, read by one that does not.
      await appendAll(eventStore(storage, options()), "u", [[add(1), rename("x")]]);
      await expect(narrow.load("u")).rejects.toThrow(/unknown event type google\.protobuf\.StringValue/);
    });
  });
}

describe("event store on a SQLite file it alone writes (PlatformStorage.soleWriter)", () => {
  let home: Home;
  let storage: PlatformStorage;
  beforeEach(async () => {
    home = sqliteHome({ owned: true });
    storage = await home.open();
  });
  afterEach(() => home.dispose());

  it("loads a kept stream without reading the database; a conflicting append drops what was kept, and the next load reads the stream", async () => {
    expect(storage.soleWriter).toBe(true);
    const counted = counting(storage);
    const store = eventStore(counted.storage, options(100));
    const first = await storage.transact((tx) => store.append(tx, { streamId: "s", state: INITIAL, version: 0 }, [add(1), add(2)]));
    counted.rows.reads = 0;
    expect(await store.load("s")).toEqual(first);
    expect(counted.rows.reads).toBe(0);

    // An append from a stale load (version 0) conflicts: what was kept is dropped, though it
    // was right, and the next load reads the stream again.
    const stale = await outcome(storage.transact((tx) => store.append(tx, { streamId: "s", state: INITIAL, version: 0 }, [add(5)])));
    expect(stale).toBe("WriteConflict: stream s: version 1 was appended concurrently");
    expect(await store.load("s")).toEqual(first);
    expect(counted.rows.reads).toBeGreaterThan(0);

    // Kept again from that load: reads nothing.
    counted.rows.reads = 0;
    const second = await storage.transact((tx) => store.append(tx, first, [sub(1)]));
    expect(await store.load("s")).toEqual(second);
    expect(counted.rows.reads).toBe(0);
    expect(second).toEqual({ streamId: "s", state: { total: 2, events: 3, label: "", trail: [1, 2, -1] }, version: 3 });
  });

  it("is not said of storage opened without owning its file", async () => {
    const plain = sqliteHome();
    try {
      expect((await plain.open()).soleWriter).toBe(false);
    } finally {
      await plain.dispose();
    }
  });
});
