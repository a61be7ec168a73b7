// The outbox relay in CDC mode (`outbox.relay = "cdc"`): outbox rows streamed from the WAL
// through a permanent logical replication slot `<schema>_outbox`, published to NATS JetStream.
// Integration: the shared Postgres (wal_level=logical) and NATS, or a private nats-server for the
// outage. Each test takes its own prefix (`randomPrefix()`: schemas, roles, slot, publication,
// streams) and drops exactly that afterwards.
import { rmSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import type { Sql } from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { deleteStreams, NatsServer, randomPrefix, SHARED_NATS } from "../../test/support/nats-server.ts";
import { bootModules, tempDataDir, testConfig, waitFor } from "../../test/support/platform.ts";
import { dropPgPrefix, pgConnect, TEST_POSTGRES_URL } from "../../test/support/postgres.ts";
import { openBus } from "../bus/open.ts";
import type { Bus, BusSubscription } from "../bus/types.ts";
import { assertLogicalWal } from "../cdc/admin.ts";
import { parseLsn } from "../cdc/lsn.ts";
import type { PlatformConfig } from "../config/schema.ts";
import { defineModule } from "../module.ts";
import { createLogger } from "../observability/logger.ts";
import { Metrics } from "../observability/metrics.ts";
import type { PlatformStorage } from "../storage/module-storage.ts";
import { openModuleStorage } from "../storage/open.ts";
import { testStorageDeps } from "../storage/storage.conformance.ts";
import { CdcOutboxRelay } from "./cdc-relay.ts";

/** A module that only publishes (its events go through the outbox like any module's). */
const writer = defineModule({ name: "writer", migrations: { sqlite: [], postgres: [] }, publishes: [ErrorInfoSchema], start: () => ({}) });

/** Commits one transaction per entry, each publishing its events `[aggregate, reason]`; resolves with the event ids. */
async function write(storage: PlatformStorage, ...txs: Array<Array<[string, string]>>): Promise<string[]> {
  const ids = await Promise.all(txs.map((events) => storage.transact((tx) => events.map(([agg, reason]) => tx.publish(ErrorInfoSchema, agg, { reason })))));
  return ids.flat();
}

/** `n` single-event transactions over three aggregates, reasons `<tag>-<i>`. */
const batch = (tag: string, n: number) => Array.from({ length: n }, (_, i): Array<[string, string]> => [[`agg-${i % 3}`, `${tag}-${i}`]]);

interface Got {
  id: string;
  aggregateId: string;
  reason: string;
  /** The message's position in its stream: a republished event that the bus did not drop gets a new one. */
  seq: number;
}

/** A raw subscriber on its own connection to the bus (no inbox): records every delivery. */
async function probe(config: PlatformConfig) {
  const bus = await openBus(config, createLogger({ level: "error", sink: () => {} }));
  const got: Got[] = [];
  const sub: BusSubscription = bus.subscribe({
    consumer: "probe.all",
    types: [ErrorInfoSchema.typeName],
    handle: async (deliveries) => {
      for (const d of deliveries) got.push({ id: d.envelope.id, aggregateId: d.envelope.aggregateId, reason: fromBinary(ErrorInfoSchema, d.envelope.payload).reason, seq: d.seq });
      return deliveries.map(() => ({ ok: true as const }));
    },
  });
  /** Distinct ids seen. */
  const ids = () => new Set(got.map((g) => g.id));
  return {
    got,
    ids,
    /** Waits until every id in `expected` arrived. */
    waitAll: (expected: readonly string[]) => waitFor(() => expected.every((id) => ids().has(id)), { what: `${expected.length} events on the bus (seen ${ids().size})`, timeoutMs: 30_000 }),
    /** Each event reached the bus once: one stream message per id (a redelivery of the same message repeats its seq). */
    copiesPerEvent: () => {
      const seqs = new Map<string, Set<number>>();
      for (const g of got) seqs.set(g.id, (seqs.get(g.id) ?? new Set()).add(g.seq));
      return [...new Set([...seqs.values()].map((s) => s.size))];
    },
    /** Per aggregate, event ids in the order they first arrived. */
    orderPerAggregate: () => {
      const out: Record<string, string[]> = {};
      for (const g of got) if (!(out[g.aggregateId] ??= []).includes(g.id)) out[g.aggregateId]!.push(g.id);
      return out;
    },
    async close() {
      await sub.stop();
      await bus.close();
    },
  };
}

describe('outbox relay from the WAL (outbox.relay = "cdc")', () => {
  let admin: Sql;
  const cleanups: Array<() => Promise<void>> = [];
  beforeAll(() => {
    admin = pgConnect();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err) => console.error("cleanup failed", err));
  });
  afterAll(() => admin.end());

  /** A fresh prefix for one test (schemas, roles, slot, publication, streams), dropped after it. */
  function topology(opts: { nats?: string; duplicateWindowSeconds?: number } = {}) {
    const nats = opts.nats ?? SHARED_NATS;
    const prefix = randomPrefix();
    cleanups.push(async () => {
      await dropPgPrefix(prefix);
      if (nats === SHARED_NATS) await deleteStreams(SHARED_NATS, prefix);
    });
    const base = testConfig({ dataDir: "unused" });
    const overrides: Partial<PlatformConfig> = {
      logLevel: "info",
      outbox: { ...base.outbox, relay: "cdc" },
      storage: { ...base.storage, kind: "postgres", postgres: { ...base.storage.postgres, url: TEST_POSTGRES_URL, schemaPrefix: prefix } },
      bus: {
        ...base.bus,
        kind: "nats",
        nats: { ...base.bus.nats, servers: [nats], prefix, requestTimeoutMs: 1000, reconnectWaitMs: 50, duplicateWindowSeconds: opts.duplicateWindowSeconds ?? 120 },
      },
      cdc: { ...base.cdc, heartbeatMs: 200 },
    };
    const config = (dataDir = "unused") => testConfig({ ...overrides, dataDir });
    return { prefix, schema: `${prefix}_writer`, slot: `${prefix}_writer_outbox`, overrides, config };
  }

  /** Boots the writer in a platform of its own ("a process"); disposed after the test unless disposed before. */
  async function boot(overrides: Partial<PlatformConfig>) {
    const dataDir = tempDataDir();
    const t = await bootModules([writer], { ...overrides, dataDir });
    let stopped = false;
    const dispose = async () => {
      if (stopped) return;
      stopped = true;
      await t.dispose();
      rmSync(dataDir, { recursive: true, force: true });
    };
    cleanups.push(dispose);
    return { ...t, dispose, storage: t.platform.storage("writer") };
  }

  async function openProbe(config: PlatformConfig) {
    const p = await probe(config);
    cleanups.push(() => p.close());
    return p;
  }

  /** The writer's storage alone, no relay: what a process writes while no relay runs. */
  async function writeWithoutRelay(config: PlatformConfig, ...txs: Array<Array<[string, string]>>): Promise<string[]> {
    const storages = await openModuleStorage(config, [writer], testStorageDeps());
    try {
      return await write(storages.get("writer")!, ...txs);
    } finally {
      await storages.get("writer")!.close();
    }
  }

  /** Per aggregate, event ids in commit (`seq`) order, as the outbox holds them. */
  const commitOrder = async (schema: string) => {
    const rows = await admin.unsafe<{ id: string; agg: string }[]>(`SELECT event_id::text AS id, aggregate_id AS agg FROM "${schema}".selaras_outbox ORDER BY seq`);
    const out: Record<string, string[]> = {};
    for (const r of rows) (out[r.agg] ??= []).push(r.id);
    return out;
  };
  /** On the bus: every one of `all` exactly once, each aggregate's in commit order; nothing left unmarked. */
  const expectOnceInCommitOrder = async (p: Awaited<ReturnType<typeof openProbe>>, all: readonly string[], schema: string) => {
    expect(p.ids().size).toBe(all.length);
    expect(p.copiesPerEvent()).toEqual([1]);
    expect(p.orderPerAggregate()).toEqual(await commitOrder(schema));
    expect(await unpublished(schema)).toBe(0);
  };
  const unpublished = async (schema: string) => Number((await admin.unsafe(`SELECT count(*) AS n FROM "${schema}".selaras_outbox WHERE published_at IS NULL`))[0]!.n);
  /** The walsender streaming the slot. */
  const readerPid = async (slot: string) => {
    const [s] = await admin<{ pid: number }[]>`
      SELECT s.active_pid AS pid FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
      WHERE s.slot_name = ${slot} AND a.application_name = 'selaras-cdc'`;
    return s?.pid;
  };
  const streaming = (slot: string) => waitFor(() => readerPid(slot), { what: `a relay streaming ${slot}`, timeoutMs: 20_000 });
  const confirmed = async (slot: string) => parseLsn((await admin<{ l: string }[]>`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = ${slot}`)[0]!.l);
  const currentLsn = async () => parseLsn((await admin<{ l: string }[]>`SELECT pg_current_wal_lsn()::text AS l`)[0]!.l);
  /** Waits until the slot has confirmed everything committed so far: the relay has seen (and published or skipped) all of it. */
  const confirmedUpToNow = async (slot: string) => {
    const now = await currentLsn();
    await waitFor(async () => (await confirmed(slot)) >= now, { what: `${slot} to confirm the WAL written so far` });
  };
  const logged = (t: { logs: string[] }, msg: string) => t.logs.some((l) => (JSON.parse(l) as { msg: string }).msg === msg);

  it("publishes every committed event once, in commit order per aggregate — rows from before the slot first — and marks them published", async () => {
    const { schema, slot, prefix, overrides, config } = topology();
    const early = await writeWithoutRelay(config(), [["agg-0", "early-0"], ["agg-1", "early-1"]], [["agg-0", "early-2"]]);
    const p = await openProbe(config());
    const t = await boot(overrides);
    await streaming(slot);
    // Concurrent transactions of one to three events each: group commits, several aggregates.
    const live = await write(t.storage, ...Array.from({ length: 30 }, (_, i): Array<[string, string]> => Array.from({ length: 1 + (i % 3) }, (_, j) => [`agg-${(i + j) % 4}`, `live-${i}.${j}`])));
    const all = [...early, ...live];
    await p.waitAll(all);
    await t.platform.settle();
    await confirmedUpToNow(slot);

    await expectOnceInCommitOrder(p, all, schema);
    const metrics = await t.platform.metrics.text();
    expect(metrics).toContain(`selaras_events_published_total{module="writer"} ${all.length}`);
    expect(metrics).toContain(`selaras_relay_lag_seconds_count{module="writer"} ${all.length}`);
    expect(metrics).toContain('selaras_outbox_backlog{module="writer"} 0');
    expect(metrics).toMatch(/selaras_relay_slot_lag_bytes\{module="writer"\} \d+/);
    // The slot streams inserts only (marks and prunes are not decoded for it); the polling relay's lease and LISTEN are not used.
    const [pub] = await admin`SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = ${slot}`;
    expect(pub).toEqual({ pubinsert: true, pubupdate: false, pubdelete: false, pubtruncate: false });
    expect(await admin`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = hashtext('selaras.relay')::oid AND objid = hashtext(${schema})::oid`).toHaveLength(0);
    expect(await admin`SELECT 1 FROM pg_stat_activity WHERE usename = ${`${prefix}_writer`} AND query LIKE 'LISTEN%'`).toHaveLength(0);
  });

  it("restarted mid-stream, loses and repeats nothing: rows committed during the stop and while no relay ran follow, each once", async () => {
    // A 1 s duplicate window: a republished event would show as a second stream message.
    const { schema, slot, overrides, config } = topology({ duplicateWindowSeconds: 1 });
    const p = await openProbe(config());
    const first = await boot(overrides);
    await streaming(slot);
    // A writer that keeps committing until its process stops.
    const committed: string[] = [];
    const writing = (async () => {
      for (let i = 0; ; i++) {
        const ids = await write(first.storage, [[`agg-${i % 3}`, `first-${i}`], [`agg-${(i + 1) % 3}`, `first-${i}b`]]).catch(() => undefined);
        if (!ids) return;
        committed.push(...ids);
      }
    })();
    await waitFor(() => p.ids().size >= 20, { what: "the stream under way" });
    await first.dispose();
    await writing;
    const idle = await writeWithoutRelay(config(), ...batch("idle", 6));
    const left = await unpublished(schema);
    const second = await boot(overrides);
    const later = await write(second.storage, ...batch("later", 6));
    const all = [...committed, ...idle, ...later];
    await p.waitAll(all);
    await second.platform.settle();
    await confirmedUpToNow(slot);

    // The second published what was left and what came later, each once — not only "the bus dropped the copies".
    expect(left).toBeGreaterThanOrEqual(idle.length);
    expect(await second.platform.metrics.text()).toContain(`selaras_events_published_total{module="writer"} ${left + later.length}`);

    await expectOnceInCommitOrder(p, all, schema);
  });

  it("a relay that dies after the bus took a batch but before confirming it: the next one republishes it, and the bus drops the copies", async () => {
    const { schema, slot, config } = topology();
    const cfg = config();
    const p = await openProbe(cfg);
    const quiet = createLogger({ level: "error", sink: () => {} });
    const bus = await openBus(cfg, quiet);
    cleanups.push(() => bus.close());
    const open = async () => {
      const storage = (await openModuleStorage(cfg, [writer], testStorageDeps())).get("writer")!;
      cleanups.push(() => storage.close());
      return storage;
    };
    const relay = (storage: PlatformStorage, via: Bus, metrics: Metrics) =>
      new CdcOutboxRelay({ module: "writer", schema, role: schema, storage, connection: cfg.storage.postgres.url, grantModuleRole: false, bus: via, batchSize: 100, heartbeatMs: 200, logger: quiet, metrics });

    // Relay A publishes through a bus that, once `dying`, takes the batch and then never answers.
    let dying = false;
    let release!: (err: Error) => void;
    const hung = new Promise<never>((_, reject) => (release = reject));
    hung.catch(() => {});
    // Whether a publish dies is decided when it is called: a batch published before `dying` was
    // set (whose answer may still be on its way) is answered.
    const dyingBus = {
      publish: async (events: Parameters<Bus["publish"]>[0]) => {
        const dies = dying;
        await bus.publish(events);
        return dies ? hung : undefined;
      },
    } as unknown as Bus;
    const storageA = await open();
    const a = relay(storageA, dyingBus, new Metrics());
    await a.setup();
    a.start();
    const before = await write(storageA, ...batch("before", 6));
    await p.waitAll(before);
    dying = true;
    const lost = await write(storageA, [["agg-0", "lost-0"], ["agg-1", "lost-1"], ["agg-0", "lost-2"]]);
    await p.waitAll(lost); // on the bus, but neither marked nor confirmed
    expect(await unpublished(schema)).toBe(3);
    // A's process is gone for Postgres: its walsender ends, the slot is free.
    await admin`SELECT pg_terminate_backend(${(await streaming(slot))!})`;

    const storageB = await open();
    const metricsB = new Metrics();
    const b = relay(storageB, bus, metricsB);
    cleanups.push(async () => {
      const stopping = a.stop(0);
      release(new Error("process gone"));
      await stopping;
      await b.stop();
    });
    await b.setup();
    b.start();
    const after = await write(storageB, ...batch("after", 6));
    await p.waitAll(after);
    await b.drained();
    await confirmedUpToNow(slot);

    // B published the three again (its catch-up), the bus dropped them as duplicates of their ids.
    expect(await metricsB.text()).toContain('selaras_events_published_total{module="writer"} 9');
    const all = [...before, ...lost, ...after];
    await expectOnceInCommitOrder(p, all, schema);
  });

  it("survives pg_terminate_backend of its walsender: what was committed meanwhile and after arrives once, in order", async () => {
    const { schema, slot, overrides, config } = topology();
    const p = await openProbe(config());
    const t = await boot(overrides);
    const pid = await streaming(slot);
    const one = await write(t.storage, ...batch("one", 6));
    await p.waitAll(one);

    await admin`SELECT pg_terminate_backend(${pid})`;
    const two = await write(t.storage, ...batch("two", 6));
    await waitFor(async () => {
      const now = await readerPid(slot);
      return now && now !== pid;
    }, { what: "a new walsender" });
    const three = await write(t.storage, ...batch("three", 6));
    const all = [...one, ...two, ...three];
    await p.waitAll(all);
    await t.platform.settle();
    await confirmedUpToNow(slot);

    await expectOnceInCommitOrder(p, all, schema);
    expect(await t.platform.metrics.text()).toContain(`selaras_events_published_total{module="writer"} ${all.length}`);
    expect(logged(t, "cdc reconnected")).toBe(true);
  });

  it("while the bus is down, holds the rows (unmarked, unconfirmed in the slot) and publishes them once it is back", async () => {
    const nats = await NatsServer.start();
    cleanups.push(() => nats.dispose());
    const { schema, slot, overrides, config } = topology({ nats: nats.url });
    const p = await openProbe(config());
    const t = await boot(overrides);
    await streaming(slot);
    const before = await write(t.storage, ...batch("before", 3));
    await p.waitAll(before);
    // Received is not yet marked: killed before the relay had the bus's ack, the first rows would
    // be refused and held too.
    await waitFor(async () => (await unpublished(schema)) === 0, { what: "the first rows marked published" });

    await nats.kill();
    const during = await write(t.storage, ...batch("during", 6));
    const committed = await currentLsn();
    await waitFor(() => logged(t, "cdc consumer failed; delivering the batch again"), { what: "a refused publish" });
    expect(await unpublished(schema)).toBe(during.length);
    expect(await confirmed(slot)).toBeLessThan(committed);
    expect(await t.platform.metrics.text()).toContain(`selaras_outbox_backlog{module="writer"} ${during.length}`);

    await nats.restart();
    const after = await write(t.storage, ...batch("after", 3));
    const all = [...before, ...during, ...after];
    await p.waitAll(all);
    await t.platform.settle(20_000);
    await waitFor(async () => (await confirmed(slot)) >= committed, { what: "the slot to confirm past the held rows" });

    await expectOnceInCommitOrder(p, all, schema);
  });

  it("one instance streams; another stands by, publishes nothing, and takes over when the first stops", async () => {
    const { schema, slot, overrides, config } = topology();
    const p = await openProbe(config());
    const first = await boot(overrides);
    const pid = await streaming(slot);
    const second = await boot(overrides);
    await waitFor(() => logged(second, "outbox relay standing by: another instance streams the slot"), { what: "the second to stand by" });
    const viaSecond = await write(second.storage, ...batch("second", 6));
    await p.waitAll(viaSecond);
    expect(await readerPid(slot)).toBe(pid);
    expect(await second.platform.metrics.text()).not.toMatch(/selaras_events_published_total\{module="writer"\} [1-9]/);

    await first.dispose();
    await waitFor(async () => {
      const now = await readerPid(slot);
      return now && now !== pid;
    }, { what: "the standby to stream" });
    const later = await write(second.storage, ...batch("later", 6));
    const all = [...viaSecond, ...later];
    await p.waitAll(all);
    await second.platform.settle();
    await confirmedUpToNow(slot);

    expect(p.ids().size).toBe(all.length);
    expect(p.copiesPerEvent()).toEqual([1]);
    expect(p.orderPerAggregate()).toEqual(await commitOrder(schema));
    // The first flushed what it had on stopping; the second published only what came after.
    expect(await second.platform.metrics.text()).toContain(`selaras_events_published_total{module="writer"} ${later.length}`);
  });

  it("refuses to start on embedded SQLite, and with a role that cannot replicate, saying why", async () => {
    const sqliteDir = tempDataDir();
    cleanups.push(async () => rmSync(sqliteDir, { recursive: true, force: true }));
    const onSqlite = await bootModules([writer], { dataDir: sqliteDir, outbox: { ...testConfig({ dataDir: sqliteDir }).outbox, relay: "cdc" } }).catch((e: Error) => e);
    expect(onSqlite).toBeInstanceOf(Error);
    expect((onSqlite as Error).message).toMatch(/^outbox\.relay: "cdc" streams the outbox from the Postgres WAL, but storage\.kind is "sqlite"/);

    const { prefix, overrides } = topology();
    const role = `${prefix}_plain`;
    await admin.unsafe(`CREATE ROLE "${role}" LOGIN`);
    const url = new URL(TEST_POSTGRES_URL);
    url.username = role;
    const err = await bootModules([writer], { ...overrides, dataDir: sqliteDir, cdc: { ...overrides.cdc!, postgres: { url: url.href } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`cannot relay the outbox of module writer from the WAL (outbox.relay = "cdc"): role ${role} has neither REPLICATION nor SUPERUSER`);
  });

  it("refuses a server whose wal_level is not logical, naming the setting and the way out", async () => {
    const replica = (async () => [{ level: "replica" }]) as unknown as Sql;
    await expect(assertLogicalWal(replica, 'outbox.relay = "cdc" (module orders)', 'use outbox.relay = "poll"')).rejects.toThrow(
      'outbox.relay = "cdc" (module orders) needs wal_level = logical, but the server runs with wal_level = replica: set it in postgresql.conf and restart the server, or use outbox.relay = "poll"',
    );
    await expect(assertLogicalWal(admin, "here")).resolves.toBeUndefined();
  });
});
