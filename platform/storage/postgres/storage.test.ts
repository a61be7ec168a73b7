import type { Sql } from "postgres";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../../gen/selaras/v1/errors_pb.ts";
import { waitFor } from "../../../test/support/platform.ts";
import { dropPgPrefix, pgConnect, pgStorageConfig, randomPgPrefix } from "../../../test/support/postgres.ts";
import { PlatformConfigSchema } from "../../config/schema.ts";
import type { ModuleManifest } from "../../module.ts";
import type { Bus, EventEnvelope } from "../../bus/types.ts";
import { createLogger } from "../../observability/logger.ts";
import { Metrics } from "../../observability/metrics.ts";
import { OutboxRelay } from "../../outbox/relay.ts";
import type { OutboxRow, PlatformStorage } from "../module-storage.ts";
import { openModuleStorage, type OpenStorageDeps } from "../open.ts";
import { items, storageConformance, storageTestModule, testStorageDeps } from "../storage.conformance.ts";

// Integration: the shared Postgres. Every home provisions schemas and roles `t_<random>_<module>`
// through `openModuleStorage`, as the platform does, and drops exactly those.

/** Test modules on the shared Postgres under a fresh prefix; each `openAll` is one more "process". */
function pgHome(modules: readonly ModuleManifest[] = [storageTestModule()], pool: { poolSize?: number; maxInFlight?: number; client?: "postgres.js" } = {}) {
  const prefix = randomPgPrefix();
  const opened: PlatformStorage[] = [];
  const openAll = async (deps: OpenStorageDeps) => {
    const storage = pgStorageConfig(prefix);
    const storages = await openModuleStorage(PlatformConfigSchema.parse({ storage: { ...storage, postgres: { ...storage.postgres, ...pool } } }), modules, deps);
    opened.push(...storages.values());
    return storages;
  };
  return {
    prefix,
    openAll,
    open: async (deps: OpenStorageDeps) => (await openAll(deps)).get(modules[0]!.name)!,
    async dispose() {
      for (const s of opened) await s.close();
      await dropPgPrefix(prefix);
    },
  };
}

storageConformance("Postgres", async () => pgHome());
// Two group commits of a module in flight at once: the same guarantees.
storageConformance("Postgres, 2 commits in flight", async () => pgHome(undefined, { poolSize: 3, maxInFlight: 2 }));
// The pool's client is Bun.sql under Bun ("auto"), postgres.js on Node: under Bun, postgres.js too.
if (typeof Bun !== "undefined") storageConformance("Postgres, postgres.js under Bun", async () => pgHome(undefined, { client: "postgres.js" }));

describe("Postgres storage", () => {
  let admin: Sql;
  let home: ReturnType<typeof pgHome>;
  beforeAll(() => {
    admin = pgConnect();
  });
  afterAll(async () => {
    await admin.end();
  });
  afterEach(async () => {
    await home.dispose();
  });

  describe("two processes of one module", () => {
    beforeEach(() => {
      home = pgHome();
    });

    /** Backends holding the relay lease of the module's schema. */
    const holders = async () =>
      (await admin<{ pid: number }[]>`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
        AND classid = hashtext('selaras.relay')::oid AND objid = hashtext(${`${home.prefix}_conf`})::oid`).map((r) => r.pid);

    it("one leads the relay at a time; when the leader closes, the other takes over and reads the rest; commits of one wake the other", async () => {
      const a = await home.open(testStorageDeps());
      const b = await home.open(testStorageDeps());
      let aWakes = 0;
      a.onOutboxCommit(() => aWakes++);

      const published = await b.transact((tx) => ["x1", "x2", "x3", "x4"].map((id) => tx.publish(ErrorInfoSchema, id, { reason: id })));
      await waitFor(() => aWakes >= 1, { what: "A woken by B's commit" });
      const rowsOfA = await a.readUnpublished(10);
      expect(rowsOfA.map((r) => r.event_id)).toEqual(published);
      const leader = await holders();
      expect(leader).toHaveLength(1);

      // B stands by: it tried for the lease and did not get it.
      let rowsOfB: OutboxRow[] | undefined;
      const readOfB = b.readUnpublished(10).then((rows) => (rowsOfB = rows));
      await waitFor(
        async () => (await admin`SELECT 1 FROM pg_stat_activity WHERE usename = ${`${home.prefix}_conf`} AND query LIKE '%pg_try_advisory_lock%' AND pid <> ${leader[0]!}`).length > 0,
        { what: "B to try for the lease" },
      );
      expect(rowsOfB).toBeUndefined();
      expect(await holders()).toEqual(leader);

      await a.markPublished(rowsOfA[1]!.seq, Date.now());
      await a.close();
      await readOfB;
      expect(rowsOfB!.map((r) => r.event_id)).toEqual(published.slice(2));
      const now = await holders();
      expect(now).toHaveLength(1);
      expect(now[0]).not.toBe(leader[0]);
      await b.markPublished(rowsOfB![1]!.seq, Date.now());
      expect(await b.readUnpublished(10)).toEqual([]);
      expect(await b.outboxStats()).toEqual({ backlog: 0, oldestCreatedAt: undefined });
    });

    it("a standby relay stops at once on shutdown while the leader keeps the lease and its backlog", async () => {
      const deps = testStorageDeps();
      const a = await home.open(deps);
      const b = await home.open(testStorageDeps());
      await a.transact((tx) => tx.publish(ErrorInfoSchema, "x1", {}));
      await a.readUnpublished(10); // A leads
      const published: EventEnvelope[] = [];
      const bus = { publish: async (e: EventEnvelope[]) => void published.push(...e) } as unknown as Bus;
      const relay = new OutboxRelay(b, bus, { batchSize: 10, logger: createLogger({ level: "error", sink: () => {} }), metrics: new Metrics() });
      relay.start();
      await waitFor(
        async () => (await admin`SELECT 1 FROM pg_stat_activity WHERE usename = ${`${home.prefix}_conf`} AND query LIKE '%pg_try_advisory_lock%'`).length > 0,
        { what: "B's relay to stand by" },
      );
      expect(b.relayLeader).toBe(false);
      // Resolves without the 5 s drain bound: a standby has nothing to flush, and its lease wait ends.
      const stopped = relay.stop(60_000).then(() => "stopped");
      expect(await Promise.race([stopped, waitFor(() => false, { timeoutMs: 3000, what: "never" }).catch(() => "timed out")])).toBe("stopped");
      expect(published).toEqual([]);
      expect((await a.outboxStats()).backlog).toBe(1);
    });

    it("bodies of both processes commit into one outbox, each in commit order", async () => {
      const a = await home.open(testStorageDeps());
      const b = await home.open(testStorageDeps());
      const ids = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).transact((tx) => (tx.write(items.insert, { id: `r${i}`, name: `r${i}`, v: i }), tx.publish(ErrorInfoSchema, `r${i}`, {})))),
      );
      const rows = await a.readUnpublished(100);
      expect(rows.map((r) => r.event_id).sort()).toEqual([...ids].sort());
      expect(rows.map((r) => r.seq)).toEqual(rows.map((r) => r.seq).sort((x, y) => x - y));
      expect(await b.read(items.all)).toHaveLength(10);
    });
  });

  it("opens each module as its own role, which cannot read or write another module's tables (42501)", async () => {
    home = pgHome([storageTestModule("alpha"), storageTestModule("beta")]);
    const all = await home.openAll(testStorageDeps());
    const alpha = all.get("alpha")!;
    const beta = all.get("beta")!;
    await alpha.transact((tx) => (tx.write(items.insert, { id: "a", name: "a", v: 1 }), tx.publish(ErrorInfoSchema, "a", {})));

    expect(await alpha.queryRaw("SELECT current_user AS u")).toEqual([{ u: `${home.prefix}_alpha` }]);
    expect(await beta.queryRaw("SELECT current_user AS u")).toEqual([{ u: `${home.prefix}_beta` }]);
    expect(await alpha.read(items.all)).toEqual([{ id: "a", name: "a", v: 1 }]);
    expect(await beta.read(items.all)).toEqual([]); // the same unqualified name is its own table

    const denied = (p: Promise<unknown>) => p.then(() => "allowed", (e: { code?: string }) => e.code);
    const other = `"${home.prefix}_alpha"`;
    expect(await denied(beta.queryRaw(`SELECT * FROM ${other}.items`))).toBe("42501");
    expect(await denied(beta.queryRaw(`SELECT * FROM ${other}.selaras_outbox`))).toBe("42501");
    expect(await denied(beta.queryRaw(`DELETE FROM ${other}.items`))).toBe("42501");
    expect(await alpha.read(items.all)).toHaveLength(1);
  });
});
