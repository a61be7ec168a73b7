import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import type { Sql } from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { deleteStreams, NatsServer, SHARED_NATS } from "../../test/support/nats-server.ts";
import { bootModules, tempDataDir, testConfig, waitFor } from "../../test/support/platform.ts";
import { dropPgPrefix, pgConnect, TEST_POSTGRES_URL } from "../../test/support/postgres.ts";
import { timedPrefix } from "../../test/support/stale.ts";
import type { PlatformConfig } from "../config/schema.ts";
import { parseLsn } from "./lsn.ts";
import { seen, shelf, shelfTx, watcher, type Seen } from "./capture.fixtures.ts";

// Integration: the shared Postgres (wal_level=logical) and NATS. The platform captures
// `shelf.items` from the WAL through a slot named after shelf's schema, and the watcher module
// consumes the change events through its inbox. Each test boots under its own prefix
// `cdcp_<creation time, base 36 s>_<random>` (schemas, roles, slot, publication, streams), dropped
// after the test; the suite's global set-up drops leftovers of killed runs (test/support/stale.ts).
const PREFIX = "cdcp_";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("change capture on Postgres (logical replication slot)", () => {
  let admin: Sql;
  const cleanups: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    admin = pgConnect();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(() => admin.end());

  /** A fresh prefix for one test's schemas, slot and streams, dropped after the test. */
  function topology(nats = SHARED_NATS) {
    const prefix = timedPrefix(PREFIX, randomBytes(3).toString("hex"));
    const dataDir = tempDataDir();
    cleanups.push(async () => {
      await dropPgPrefix(prefix);
      if (nats === SHARED_NATS) await deleteStreams(SHARED_NATS, prefix);
      rmSync(dataDir, { recursive: true, force: true });
    });
    const base = testConfig({ dataDir });
    const overrides: Partial<PlatformConfig> = {
      dataDir,
      logLevel: "info",
      storage: { ...base.storage, kind: "postgres", postgres: { ...base.storage.postgres, url: TEST_POSTGRES_URL, schemaPrefix: prefix } },
      bus: { ...base.bus, kind: "nats", nats: { ...base.bus.nats, servers: [nats], prefix, requestTimeoutMs: 1000, reconnectWaitMs: 50 } },
      cdc: { ...base.cdc, heartbeatMs: 200 },
    };
    return { prefix, slot: `${prefix}_shelf_cdc`, schema: `${prefix}_shelf`, overrides };
  }

  async function boot(overrides: Partial<PlatformConfig>, modules = [shelf, watcher]) {
    const t = await bootModules(modules, overrides);
    let stopped = false;
    const dispose = async () => {
      if (stopped) return;
      stopped = true;
      await t.dispose();
    };
    cleanups.push(dispose);
    return { ...t, dispose };
  }

  const slotState = async (slot: string) => {
    const [s] = await admin<{ confirmed: string | null; pid: number | null }[]>`SELECT confirmed_flush_lsn::text AS confirmed, active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${slot}`;
    return s && { confirmed: s.confirmed ? parseLsn(s.confirmed) : 0n, pid: s.pid };
  };
  /** The pid of the reader streaming the slot (not of the session that created it with its snapshot). */
  const readerPid = async (slot: string) => {
    const [s] = await admin<{ pid: number }[]>`
      SELECT s.active_pid AS pid FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
      WHERE s.slot_name = ${slot} AND a.application_name = 'selaras-cdc'`;
    return s?.pid;
  };
  /** Waits until a reader streams the slot (its snapshot is published by then). */
  const streaming = (slot: string) => waitFor(() => readerPid(slot), { what: `a reader on ${slot}` });
  const waitSeen = (t: Awaited<ReturnType<typeof boot>>, n: number) =>
    waitFor(async () => {
      const s = await seen(t.platform);
      return s.length >= n ? s : undefined;
    }, { what: `${n} changes seen` });
  /** Changes sorted by their WAL position (the bus keeps order per row only, across partitions). */
  const inCommitOrder = (list: Seen[]) => [...list].sort((x, y) => x.source.lsn - y.source.lsn);
  const currentLsn = async () => parseLsn((await admin<{ l: string }[]>`SELECT pg_current_wal_lsn()::text AS l`)[0]!.l);

  it("captures inserts, updates and deletes once each, in commit order, with typed before and after", async () => {
    const { slot, schema, overrides } = topology();
    const t = await boot(overrides);
    await streaming(slot);
    await shelfTx(t.platform, ["insert", { id: "a", name: "Kopi", qty: 1, photo: Buffer.from([0xca, 0xfe]) }], ["insert", { id: "b", name: "Teh", qty: 2 }]);
    await shelfTx(t.platform, ["rename", { id: "a", name: "Kopi Susu" }]);
    await shelfTx(t.platform, ["remove", { id: "b" }]);

    // On NATS order holds per row (aggregate = primary key), across rows in commit (WAL) order of `source`.
    const processed = await waitSeen(t, 4);
    const got = inCommitOrder(processed);
    expect(got.map((s) => [s.op, s.aggregateId])).toEqual([["c", "a"], ["c", "b"], ["u", "a"], ["d", "b"]]);
    const byRow = (id: string) => processed.filter((s) => s.aggregateId === id).map((s) => s.op);
    expect([byRow("a"), byRow("b")]).toEqual([["c", "u"], ["c", "d"]]);
    expect(got[0]).toMatchObject({ before: null, after: { id: "a", name: "Kopi", qty: 1, photo: "yv4=" }, sourceModule: "shelf" });
    // REPLICA IDENTITY FULL: an update and a delete carry the whole old row.
    expect(got[2]).toMatchObject({ before: { id: "a", name: "Kopi", qty: 1, photo: "yv4=" }, after: { id: "a", name: "Kopi Susu" } });
    expect(got[3]).toMatchObject({ before: { id: "b", name: "Teh", qty: 2, photo: null }, after: null });
    expect(got[0]!.source).toMatchObject({ connector: "postgresql", db: "test", schema, table: "items", module: "shelf", snapshot: false });
    // One transaction: one commit position and transaction id; later transactions further on.
    expect(got[1]!.source.commitLsn).toBe(got[0]!.source.commitLsn);
    expect(got[1]!.source.txId).toBe(got[0]!.source.txId);
    expect(got[0]!.source.txId).toBeGreaterThan(0);
    expect(got[2]!.source.commitLsn).toBeGreaterThan(got[0]!.source.commitLsn);
    expect(got[3]!.source.commitLsn).toBeGreaterThan(got[2]!.source.commitLsn);
    expect(got.every((s) => UUID.test(s.eventId) && s.occurredAt === s.source.tsMs)).toBe(true);

    await t.platform.settle();
    expect(await seen(t.platform)).toHaveLength(4);
    const metrics = await t.platform.metrics.text();
    expect(metrics).toMatch(new RegExp(`selaras_cdc_slot_lag_bytes\\{slot="${slot}"\\} \\d+`));
    expect(metrics).toMatch(/selaras_cdc_events_published_total\{module="shelf"\} 4/);
  });

  it("snapshots the rows that existed before the slot, exactly once, then streams", async () => {
    const { slot, overrides } = topology();
    const alone = await boot(overrides, [shelf]);
    await shelfTx(alone.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }], ["insert", { id: "b", name: "Teh", qty: 2 }]);
    await alone.dispose();

    const t = await boot(overrides);
    await streaming(slot);
    await shelfTx(t.platform, ["insert", { id: "c", name: "Susu", qty: 3 }]);
    const got = await waitSeen(t, 3);
    expect(got.map((s) => [s.op, s.aggregateId, s.source.snapshot]).sort()).toEqual([["c", "c", false], ["r", "a", true], ["r", "b", true]]);
    expect(got.find((s) => s.aggregateId === "a")).toMatchObject({ before: null, after: { id: "a", name: "Kopi", qty: 1, photo: null } });
    const [comment] = await admin`SELECT obj_description(oid, 'pg_publication') AS c FROM pg_publication WHERE pubname = ${slot}`;
    expect(JSON.parse(comment!.c)).toEqual({ snapshotted: ["items"] });
    await t.dispose();

    // A restart finds the snapshot recorded: no second one.
    const again = await boot(overrides);
    await streaming(slot);
    await shelfTx(again.platform, ["remove", { id: "a" }]);
    await waitSeen(again, 4);
    await again.platform.settle();
    expect((await seen(again.platform)).map((s) => s.op).sort()).toEqual(["c", "d", "r", "r"]);
  });

  it("resumes after a restart: a change committed while no process ran arrives once, nothing earlier again", async () => {
    const { slot, schema, overrides } = topology();
    const first = await boot(overrides);
    await streaming(slot);
    await shelfTx(first.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(first, 1);
    await first.dispose();

    // Written behind the platform's back: the WAL has it, the slot keeps it.
    await admin.unsafe(`UPDATE "${schema}".items SET qty = 7 WHERE id = 'a'`);
    const second = await boot(overrides);
    const got = await waitSeen(second, 2);
    expect(got.map((s) => [s.op, s.after?.qty])).toEqual([["c", 1], ["u", 7]]);
    await second.platform.settle();
    expect(await seen(second.platform)).toHaveLength(2);
  });

  it("survives the termination of its walsender: later changes still arrive once", async () => {
    const { slot, overrides } = topology();
    const t = await boot(overrides);
    const pid = await streaming(slot);
    await shelfTx(t.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(t, 1);

    await admin`SELECT pg_terminate_backend(${pid})`;
    await shelfTx(t.platform, ["insert", { id: "b", name: "Teh", qty: 2 }]);
    await waitFor(async () => {
      const now = await readerPid(slot);
      return now && now !== pid;
    }, { what: "a new walsender" });
    await shelfTx(t.platform, ["rename", { id: "a", name: "Kopi Susu" }]);
    const got = inCommitOrder(await waitSeen(t, 3));
    expect(got.map((s) => [s.op, s.aggregateId])).toEqual([["c", "a"], ["c", "b"], ["u", "a"]]);
    await t.platform.settle();
    expect(await seen(t.platform)).toHaveLength(3);
    expect(t.logs.some((l) => JSON.parse(l).msg === "cdc reconnected")).toBe(true);
  });

  it("confirms a change to the slot only once the bus has it: a bus outage holds it in the WAL, nothing is lost", async () => {
    const nats = await NatsServer.start();
    cleanups.push(() => nats.dispose());
    const { slot, overrides } = topology(nats.url);
    // A lost ack of the killed server is redelivered after ackWait (and absorbed by the inbox).
    const t = await boot({ ...overrides, bus: { ...overrides.bus!, nats: { ...overrides.bus!.nats, ackWaitSeconds: 2 } } });
    await streaming(slot);
    await shelfTx(t.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(t, 1);

    await nats.kill();
    await shelfTx(t.platform, ["insert", { id: "b", name: "Teh", qty: 2 }]);
    const committed = await currentLsn();
    // The reader handed the change over, the bus refused it: the slot stays before it.
    await waitFor(() => t.logs.some((l) => JSON.parse(l).msg === "cdc consumer failed; delivering the batch again"), { what: "a refused publish" });
    expect((await slotState(slot))!.confirmed).toBeLessThan(committed);

    await nats.restart();
    const got = inCommitOrder(await waitSeen(t, 2));
    expect(got.map((s) => [s.op, s.aggregateId])).toEqual([["c", "a"], ["c", "b"]]);
    await waitFor(async () => (await slotState(slot))!.confirmed >= committed, { what: "the slot to confirm past the change" });
    await t.platform.settle();
    expect(await seen(t.platform)).toHaveLength(2);
  });

  it("streams from one instance; a second stands by and takes over when the first stops", async () => {
    const { slot, overrides } = topology();
    const first = await boot(overrides);
    const pid = await streaming(slot);
    const second = await boot(overrides);
    await waitFor(() => second.logs.some((l) => JSON.parse(l).msg === "cdc standing by: another reader streams the slot"), { what: "the second to stand by" });
    await shelfTx(second.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(second, 1);
    expect(await readerPid(slot)).toBe(pid);

    await first.dispose();
    await waitFor(async () => {
      const now = await readerPid(slot);
      return now && now !== pid;
    }, { what: "the standby to stream" });
    await shelfTx(second.platform, ["rename", { id: "a", name: "Kopi Susu" }]);
    const got = await waitSeen(second, 2);
    expect(got.map((s) => [s.op, s.aggregateId])).toEqual([["c", "a"], ["u", "a"]]);
    await second.platform.settle();
    expect(await seen(second.platform)).toHaveLength(2);
  });

  it("refuses to start when the capture role has neither REPLICATION nor SUPERUSER, naming both", async () => {
    const { prefix, overrides } = topology();
    const role = `${prefix}_plain`;
    await admin.unsafe(`CREATE ROLE "${role}" LOGIN`);
    const url = new URL(TEST_POSTGRES_URL);
    url.username = role;
    const err = await bootModules([shelf, watcher], { ...overrides, cdc: { ...overrides.cdc!, postgres: { url: url.href } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(new RegExp(`role ${role} has neither REPLICATION nor SUPERUSER`));
  });
});
