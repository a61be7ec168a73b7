// The behaviour every module storage must show, asserted the same way against each
// (module-storage.test.ts for SQLite, postgres/storage.test.ts for Postgres). Not a test file
// itself: each implementation's test file calls `storageConformance` with a way to open it.
import { and, eq, sql } from "drizzle-orm";
import { bigint, pgTable, text as pgText } from "drizzle-orm/pg-core";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { fromBinary } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { waitFor } from "../../test/support/platform.ts";
import { newId, uuidv7Floor } from "../ids.ts";
import { defineModule, type ModuleManifest, type Tx } from "../module.ts";
import { createLogger } from "../observability/logger.ts";
import { childSpan, formatTraceparent, Tracer } from "../observability/trace.ts";
import { DuplicateDelivery, type PlatformStorage, type PlatformTx } from "./module-storage.ts";
import type { OpenStorageDeps } from "./open.ts";
import { isUniqueViolation, statementsFor, type WriteChecks } from "./statements.ts";

/** One isolated place a module's storage lives in (a data directory, a schema prefix). */
export interface StorageHome {
  /** Opens (and migrates) the test module's storage here; opening again finds what was committed. */
  open(deps: OpenStorageDeps): Promise<PlatformStorage>;
  /** Closes whatever is still open and removes everything the tests left. */
  dispose(): Promise<void>;
}

/** The test module's one table, as a SQLite and a Postgres twin. */
export const tables = {
  sqlite: { items: sqliteTable("items", { id: text("id").primaryKey(), name: text("name").notNull().unique(), v: integer("v").notNull() }) },
  postgres: { items: pgTable("items", { id: pgText("id").primaryKey(), name: pgText("name").notNull().unique(), v: bigint("v", { mode: "number" }).notNull() }) },
};

/** A row of `items`. */
export interface Item {
  id: string;
  name: string;
  v: number;
}

const p = sql.placeholder;
const q = statementsFor({ sqlite: tables.sqlite, postgres: tables.postgres });
/** Declared statements over `items`, the way module code declares them. */
export const items = {
  all: q.read<Item>((db, t) => db.select().from(t.items).orderBy(t.items.id)),
  insert: q.write((db, t) => db.insert(t.items).values({ id: p("id"), name: p("name"), v: p("v") })),
  insertIfAbsent: q.write((db, t) => db.insert(t.items).values({ id: p("id"), name: p("name"), v: p("v") }).onConflictDoNothing()),
  /** Sets `v` on the row still at `expected` (optimistic concurrency). */
  setV: q.write((db, t) => db.update(t.items).set({ v: sql`${p("v")}` }).where(and(eq(t.items.id, p("id")), eq(t.items.v, p("expected"))))),
};

/** A module with only the `items` table, in both dialects. */
export function storageTestModule(name = "conf"): ModuleManifest {
  return defineModule({
    name,
    migrations: {
      sqlite: [{ id: "0001_items", sql: "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, v INTEGER NOT NULL)" }],
      postgres: [{ id: "0001_items", sql: "CREATE TABLE items (id text PRIMARY KEY, name text NOT NULL UNIQUE, v bigint NOT NULL)" }],
    },
    start: () => ({}),
  });
}

/** Deps for `openModuleStorage` in tests: quiet logs, group-commit sizes told to `onCommit`. */
export function testStorageDeps(tracer = new Tracer(), onCommit: (bodies: number) => void = () => {}): OpenStorageDeps {
  return { tracer, logger: createLogger({ level: "error", sink: () => {} }), onCommit: () => onCommit };
}

/** A check's error, so a test can tell it from the driver's. */
export class CheckFailed extends Error {
  override readonly name = "CheckFailed";
}
const check = (reason: string) => () => new CheckFailed(reason);

/** How a transaction ended, in one comparable string. */
export function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    (v) => `ok ${String(v)}`,
    (e: Error) => (isUniqueViolation(e) ? "unique violation" : `${e.name}: ${e.message}`),
  );
}

const insert = (tx: Tx, id: string, v = 0, checks?: WriteChecks, name = id) => tx.write(items.insert, { id, name, v }, checks);
const event = (tx: Tx, aggregateId: string, reason = aggregateId) => tx.publish(ErrorInfoSchema, aggregateId, { reason });

/** Registers the conformance tests for one implementation. */
export function storageConformance(name: string, makeHome: () => Promise<StorageHome>): void {
  describe(`${name} storage: conformance`, () => {
    let home: StorageHome;
    let storage: PlatformStorage;
    let tracer: Tracer;
    let commits: number[];
    beforeEach(async () => {
      home = await makeHome();
      tracer = new Tracer();
      commits = [];
      storage = await home.open(testStorageDeps(tracer, (n) => commits.push(n)));
    });
    afterEach(async () => {
      await storage.close();
      await home.dispose();
    });

    const rows = () => storage.read(items.all);
    const ids = async () => (await rows()).map((r) => r.id);
    // Raw SQL the same in both dialects: everything in the outbox, published or not.
    const outbox = async () => (await storage.queryRaw<{ aggregate_id: string }>("SELECT aggregate_id FROM selaras_outbox ORDER BY seq")).map((r) => r.aggregate_id);
    const seed = (...seeds: Array<[id: string, v: number]>) => storage.transact((tx) => seeds.forEach(([id, v]) => insert(tx, id, v)));
    /** Runs the bodies one after the other, or all at once (one group commit). */
    const settle = async (bodies: ReadonlyArray<(tx: Tx) => unknown>, together: boolean) => {
      if (together) return Promise.all(bodies.map((b) => outcome(storage.transact(b))));
      const out: string[] = [];
      for (const b of bodies) out.push(await outcome(storage.transact(b)));
      return out;
    };

    it("commits concurrent bodies in one group, each with its rows and events, each caller getting its own result", async () => {
      const keys = Array.from({ length: 20 }, (_, i) => `r${String(i).padStart(2, "0")}`);
      const results = await Promise.all(
        keys.map((id, i) =>
          storage.transact((tx) => {
            insert(tx, id, i);
            event(tx, id);
            return i;
          }),
        ),
      );
      expect(results).toEqual(keys.map((_, i) => i));
      expect(commits).toEqual([20]);
      expect(await rows()).toEqual(keys.map((id, i) => ({ id, name: id, v: i })));
      expect(await outbox()).toEqual(keys);
    });

    it("rolls back only the failing bodies of a group (a throw, a failed check, a driver error); the others commit and see each other's writes", async () => {
      await seed(["a", 1]);
      const results = await settle(
        [
          (tx) => (insert(tx, "b"), event(tx, "b"), 0),
          (tx) => {
            insert(tx, "c");
            event(tx, "c");
            throw new Error("boom");
          },
          (tx) => (insert(tx, "d"), event(tx, "d"), tx.write(items.setV, { id: "a", v: 7, expected: 9 }, { ifUnchanged: check("stale") })),
          (tx) => (tx.write(items.setV, { id: "a", v: 2, expected: 1 }, { ifUnchanged: check("stale") }), event(tx, "a", "v2"), 3),
          (tx) => (insert(tx, "e"), event(tx, "e"), insert(tx, "f", 0, { ifDuplicate: check("name taken") }, "b")), // b: from the first body
          (tx) => (insert(tx, "g"), event(tx, "g"), insert(tx, "a")),
          (tx) => (tx.write(items.setV, { id: "a", v: 3, expected: 2 }, { ifUnchanged: check("stale") }), event(tx, "a", "v3"), 6), // sees the fourth body's update
          (tx) => (insert(tx, "h"), event(tx, "h"), 7),
        ],
        true,
      );
      expect(results).toEqual(["ok 0", "Error: boom", "CheckFailed: stale", "ok 3", "CheckFailed: name taken", "unique violation", "ok 6", "ok 7"]);
      expect(await rows()).toEqual([{ id: "a", name: "a", v: 3 }, { id: "b", name: "b", v: 0 }, { id: "h", name: "h", v: 0 }]);
      expect(await outbox()).toEqual(["b", "a", "a", "h"]);
      // The storage is not stuck after a failed group.
      await storage.transact((tx) => insert(tx, "i"));
      expect(await ids()).toEqual(["a", "b", "h", "i"]);
    });

    it("runs a body's after-commit callbacks once it committed, before its caller is answered; never for a failed body, alone or in a group", async () => {
      const ran: string[] = [];
      const body =
        (id: string, fail?: "throw" | "duplicate") =>
        (tx: PlatformTx): string => {
          tx.afterCommit(() => ran.push(`${id}: ${commits.length} commits`));
          insert(tx, id);
          if (fail === "duplicate") insert(tx, "a");
          if (fail === "throw") throw new Error("boom");
          tx.afterCommit(() => ran.push(`${id} again`));
          return id;
        };
      await seed(["a", 1]);
      // Answered after its callbacks ran, which ran after the commit.
      expect(await storage.transactInternal((tx) => body("b")(tx)).then(() => [...ran])).toEqual(["b: 2 commits", "b again"]);
      ran.length = 0;
      expect(await outcome(storage.transactInternal(body("c", "throw")))).toBe("Error: boom");
      expect(await outcome(storage.transactInternal(body("c", "duplicate")))).toBe("unique violation");
      expect(ran).toEqual([]);
      // In one group: the failed bodies' callbacks are dropped, the others run, a throwing one stops none.
      const results = await Promise.all([
        outcome(storage.transactInternal(body("d"))),
        outcome(storage.transactInternal(body("e", "throw"))),
        outcome(
          storage.transactInternal((tx) => {
            tx.afterCommit(() => {
              throw new Error("callback");
            });
            return body("f")(tx);
          }),
        ),
        outcome(storage.transactInternal(body("g", "duplicate"))),
      ]);
      expect(results).toEqual(["ok d", "Error: boom", "ok f", "unique violation"]);
      expect(ran.filter((r) => !r.includes("again")).map((r) => r.split(":")[0])).toEqual(["d", "f"]);
      expect(ran.filter((r) => r.includes("again"))).toEqual(["d again", "f again"]);
      expect(await ids()).toEqual(["a", "b", "d", "f"]);
    });

    for (const together of [false, true]) {
      const how = together ? "in a group" : "alone";

      it(`ifDuplicate turns a primary-key or unique violation into the body's error; nothing of that body is written (${how})`, async () => {
        await seed(["a", 1]);
        const results = await settle(
          [
            (tx) => (insert(tx, "x"), event(tx, "x"), insert(tx, "a", 0, { ifDuplicate: check("id taken") }, "z")),
            (tx) => (insert(tx, "b", 0, { ifDuplicate: check("name taken") }, "a"), insert(tx, "y"), event(tx, "y")),
            (tx) => (insert(tx, "c", 0, { ifDuplicate: check("unexpected") }), event(tx, "c"), "c"),
            (tx) => (insert(tx, "d"), insert(tx, "a", 0, { ifUnchanged: check("not for duplicates") }, "q")),
          ],
          together,
        );
        expect(results).toEqual(["CheckFailed: id taken", "CheckFailed: name taken", "ok c", "unique violation"]);
        expect(await ids()).toEqual(["a", "c"]);
        expect(await outbox()).toEqual(["c"]);
      });

      it(`ifUnchanged fires on a 0-row UPDATE and on an INSERT … ON CONFLICT DO NOTHING that hit; nothing of that body is written (${how})`, async () => {
        await seed(["a", 1], ["b", 1]);
        const results = await settle(
          [
            (tx) => (insert(tx, "x"), event(tx, "x"), tx.write(items.setV, { id: "a", v: 7, expected: 5 }, { ifUnchanged: check("stale") })),
            (tx) => (tx.write(items.insertIfAbsent, { id: "a", name: "n", v: 0 }, { ifUnchanged: check("exists") }), insert(tx, "y"), event(tx, "y")),
            (tx) => {
              tx.write(items.setV, { id: "b", v: 2, expected: 1 }, { ifUnchanged: check("unexpected") });
              tx.write(items.insertIfAbsent, { id: "z", name: "z", v: 0 }, { ifUnchanged: check("unexpected") });
              event(tx, "b");
              return "b";
            },
            // Without the check, a write that changes nothing is no error.
            (tx) => (tx.write(items.setV, { id: "a", v: 6, expected: 5 }), tx.write(items.insertIfAbsent, { id: "a", name: "n", v: 0 }), event(tx, "a"), "a"),
          ],
          together,
        );
        expect(results).toEqual(["CheckFailed: stale", "CheckFailed: exists", "ok b", "ok a"]);
        expect(await rows()).toEqual([{ id: "a", name: "a", v: 1 }, { id: "b", name: "b", v: 2 }, { id: "z", name: "z", v: 0 }]);
        expect(await outbox()).toEqual(["b", "a"]);
      });
    }

    it("rejects a body that returns a Promise and writes nothing of it; a transaction used after its body ended throws", async () => {
      const lateErrors: unknown[] = [];
      const asyncBody = (id: string) => async (tx: Tx) => {
        insert(tx, id);
        event(tx, id);
        await Promise.resolve();
        try {
          insert(tx, `${id}-late`);
        } catch (err) {
          lateErrors.push(err);
        }
      };
      expect(await outcome(storage.transact(asyncBody("a")))).toMatch(/must be synchronous/);
      const together = await Promise.all([outcome(storage.transact(asyncBody("b"))), outcome(storage.transact((tx) => (insert(tx, "c"), event(tx, "c"), "c")))]);
      expect(together[0]).toMatch(/must be synchronous/);
      expect(together[1]).toBe("ok c");
      await waitFor(() => lateErrors.length === 2, { what: "both late writes to fail" });
      expect(lateErrors.map(String)).toEqual([expect.stringMatching(/transaction already ended/), expect.stringMatching(/transaction already ended/)]);

      let kept!: PlatformTx;
      await storage.transactInternal((tx) => void (kept = tx));
      expect(() => insert(kept, "d")).toThrow(/transaction already ended/);
      expect(() => event(kept, "d")).toThrow(/transaction already ended/);
      expect(() => kept.claim("c1", newId())).toThrow(/transaction already ended/);
      expect(await ids()).toEqual(["c"]);
      expect(await outbox()).toEqual(["c"]);
    });

    it("returns published events in commit order with their payload and headers (each caller's trace); marks them published up to a seq", async () => {
      expect(await storage.outboxStats()).toEqual({ backlog: 0, oldestCreatedAt: undefined });
      const [t1, t2, t3] = [childSpan(), childSpan(), childSpan()];
      const before = Date.now();
      // One group: each body's events carry the trace of the call that queued it.
      const grouped = await Promise.all([
        tracer.run(t1, () => storage.transact((tx) => event(tx, "a", "first"))),
        tracer.run(t2, () => storage.transact((tx) => event(tx, "b", "second"))),
        storage.transact((tx) => [event(tx, "c", "third"), tracer.run(t3, () => event(tx, "c", "fourth"))]),
      ]);
      const later = [await storage.transact((tx) => event(tx, "a", "fifth")), await tracer.run(t2, () => storage.transact((tx) => event(tx, "d", "sixth")))];
      const published = [grouped[0], grouped[1], ...grouped[2], ...later];

      const all = await storage.readUnpublished(100);
      expect(all.map((r) => r.event_id)).toEqual(published);
      expect(all.map((r) => [r.aggregate_id, r.type, fromBinary(ErrorInfoSchema, r.payload).reason])).toEqual([
        ["a", "selaras.v1.ErrorInfo", "first"],
        ["b", "selaras.v1.ErrorInfo", "second"],
        ["c", "selaras.v1.ErrorInfo", "third"],
        ["c", "selaras.v1.ErrorInfo", "fourth"],
        ["a", "selaras.v1.ErrorInfo", "fifth"],
        ["d", "selaras.v1.ErrorInfo", "sixth"],
      ]);
      const traced = (t: typeof t1) => JSON.stringify({ traceparent: formatTraceparent(t) });
      expect(all.map((r) => r.headers)).toEqual([traced(t1), traced(t2), "{}", traced(t3), "{}", traced(t2)]);
      const seqs = all.map((r) => r.seq);
      expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
      for (const r of all) expect(r.created_at).toBeGreaterThanOrEqual(before);

      expect((await storage.readUnpublished(2)).map((r) => r.event_id)).toEqual(published.slice(0, 2));
      expect(await storage.outboxStats()).toEqual({ backlog: 6, oldestCreatedAt: Math.min(...all.map((r) => r.created_at)) });
      // The mark also reads what follows it (the relay's next batch), never what it marked.
      expect((await storage.markPublished(seqs[1]!, Date.now(), 3)).map((r) => r.event_id)).toEqual(published.slice(2, 5));
      expect((await storage.readUnpublished(100)).map((r) => r.event_id)).toEqual(published.slice(2));
      expect(await storage.outboxStats()).toEqual({ backlog: 4, oldestCreatedAt: Math.min(...all.slice(2).map((r) => r.created_at)) });
      await storage.markPublished(seqs[5]!, Date.now());
      expect(await storage.readUnpublished(100)).toEqual([]);
      expect(await storage.outboxStats()).toEqual({ backlog: 0, oldestCreatedAt: undefined });
      const next = await storage.transact((tx) => event(tx, "e"));
      expect((await storage.readUnpublished(100)).map((r) => [r.event_id, r.seq > seqs[5]!])).toEqual([[next, true]]);
    });

    it("wakes outbox listeners once per commit that wrote events; never for commits without events or rolled-back ones", async () => {
      let wakes = 0;
      let stoppedWakes = 0;
      storage.onOutboxCommit(() => wakes++);
      const stop = storage.onOutboxCommit(() => stoppedWakes++);
      await storage.transact((tx) => insert(tx, "a"));
      await outcome(storage.transact((tx) => (event(tx, "x"), insert(tx, "a")))); // a driver error
      await outcome(storage.transact((tx) => (event(tx, "x"), tx.write(items.setV, { id: "a", v: 1, expected: 9 }, { ifUnchanged: check("stale") }))));
      await storage.transact((tx) => event(tx, "b"));
      await waitFor(() => wakes >= 1, { what: "the wake-up after a commit with events" });
      expect([wakes, stoppedWakes]).toEqual([1, 1]);

      stop();
      await storage.transact((tx) => insert(tx, "c"));
      await Promise.all(["d", "e", "f"].map((id) => storage.transact((tx) => event(tx, id)))); // one group commit
      await waitFor(() => wakes >= 2, { what: "the wake-up after the group commit" });
      // Wake-ups arrive in commit order, so one for an earlier commit would have come first.
      expect([wakes, stoppedWakes]).toEqual([2, 1]);
    });

    it("claims an event once per consumer: a second claim is a duplicate and that body's writes are not applied", async () => {
      const signals: string[] = [];
      const consume = (consumer: string, eventId: string, id: string) =>
        storage
          .transactInternal((tx) => {
            if (!tx.claim(consumer, eventId)) {
              signals.push("claim returned false");
              return "duplicate";
            }
            insert(tx, id);
            event(tx, id);
            return "applied";
          })
          .catch((err: unknown) => {
            if (!(err instanceof DuplicateDelivery)) throw err;
            signals.push("DuplicateDelivery");
            return "duplicate";
          });
      const [e1, e2, e3] = [newId(), newId(), newId()];
      expect(await consume("c1", e1, "r1")).toBe("applied");
      expect(await consume("c1", e1, "r2")).toBe("duplicate");
      expect(await consume("c2", e1, "r3")).toBe("applied");
      expect(await consume("c1", e2, "r4")).toBe("applied");
      // Two deliveries of one event in the same group: exactly one applies.
      expect(await Promise.all([consume("c1", e3, "r5"), consume("c1", e3, "r6")])).toEqual(["applied", "duplicate"]);
      expect(await ids()).toEqual(["r1", "r3", "r4", "r5"]);
      expect(await outbox()).toEqual(["r1", "r3", "r4", "r5"]);
      // SQLite answers inside the body; Postgres can only fail the body once its claim ran.
      const signal = storage.dialect === "sqlite" ? "claim returned false" : "DuplicateDelivery";
      expect(signals).toEqual([signal, signal]);
      const inbox = await storage.queryRaw<{ consumer: string; event_id: string }>("SELECT consumer, event_id FROM selaras_inbox ORDER BY consumer, event_id");
      expect(inbox.map((r) => [r.consumer, String(r.event_id)])).toEqual([["c1", e1], ["c1", e2], ["c1", e3], ["c2", e1]]);
    });

    it("prunes published outbox rows and inbox entries by age, keeping unpublished and young ones", async () => {
      for (let i = 0; i < 6; i++) await storage.transact((tx) => event(tx, `a${i}`));
      const seqs = (await storage.readUnpublished(10)).map((r) => r.seq);
      await storage.markPublished(seqs[1]!, 1_000); // a0, a1 published long ago
      await storage.markPublished(seqs[3]!, 5_000); // a2, a3 published recently; a4, a5 unpublished
      const old = uuidv7Floor(1_000).replace(/0$/, "1");
      const young = uuidv7Floor(9_000).replace(/0$/, "1");
      await storage.transactInternal((tx) => [tx.claim("c1", old), tx.claim("c1", young), tx.claim("c2", old)]);

      expect(await storage.prune(3_000, 3_000)).toEqual({ outbox: 2, inbox: 2 });
      expect(await outbox()).toEqual(["a2", "a3", "a4", "a5"]);
      const inbox = await storage.queryRaw<{ consumer: string; event_id: string }>("SELECT consumer, event_id FROM selaras_inbox");
      expect(inbox.map((r) => [r.consumer, String(r.event_id)])).toEqual([["c1", young]]);
      // Unpublished rows survive any cut.
      expect(await storage.prune(Number.MAX_SAFE_INTEGER, 0)).toEqual({ outbox: 2, inbox: 0 });
      expect(await outbox()).toEqual(["a4", "a5"]);
      expect((await storage.readUnpublished(10)).map((r) => r.aggregate_id)).toEqual(["a4", "a5"]);
    });

    it("closes after the queued bodies committed, refuses work afterwards, and a reopened storage finds everything", async () => {
      await storage.ping();
      const queued = storage.transact((tx) => (insert(tx, "a"), event(tx, "a"), "done"));
      await storage.close();
      expect(await queued).toBe("done");
      expect(await outcome(storage.transact((tx) => insert(tx, "b")))).toMatch(/closed/);
      await expect(storage.ping()).rejects.toThrow();

      storage = await home.open(testStorageDeps(tracer));
      expect(await ids()).toEqual(["a"]);
      expect((await storage.readUnpublished(10)).map((r) => r.aggregate_id)).toEqual(["a"]);
    });
  });
}
