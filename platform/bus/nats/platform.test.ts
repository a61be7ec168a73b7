// The platform on NATS JetStream: a tiny inline module publishes through its outbox and another
// consumes through a subscription with its inbox — no module code knows which bus runs.
import { rmSync } from "node:fs";
import { sql } from "drizzle-orm";
import { sqliteTable, text } from "drizzle-orm/sqlite-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../../gen/selaras/v1/errors_pb.ts";
import { deleteStreams, NatsServer, randomPrefix, SHARED_NATS } from "../../../test/support/nats-server.ts";
import { bootModules, tempDataDir, waitFor } from "../../../test/support/platform.ts";
import { PlatformConfigSchema } from "../../config/schema.ts";
import type { SqliteModuleStorage, SqliteTx } from "../../storage/module-storage.ts";
import { defineModule, on } from "../../module.ts";

const notes = sqliteTable("notes", { eventId: text("event_id").primaryKey(), aggregateId: text("aggregate_id").notNull(), reason: text("reason").notNull(), traceparent: text("traceparent") });

/** Handler runs per event id, including those rolled back; the flaky event fails its first run. */
function modules(runs: Map<string, number>) {
  const writer = defineModule({
    name: "writer",
    migrations: { sqlite: [{ id: "0001_init", sql: "CREATE TABLE drafts (id TEXT PRIMARY KEY);" }] },
    publishes: [ErrorInfoSchema],
    start: (ctx) => ({
      routes: (app) =>
        app.post("/test/notes", async (c) => {
          const { notes } = (await c.req.json()) as { notes: Array<{ aggregateId: string; reason: string }> };
          const ids = await ctx.storage.transact((tx) => notes.map((n) => tx.publish(ErrorInfoSchema, n.aggregateId, { reason: n.reason })));
          return c.json({ ids });
        }),
    }),
  });
  const reader = defineModule({
    name: "reader",
    migrations: { sqlite: [{ id: "0001_init", sql: "CREATE TABLE notes (event_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL, reason TEXT NOT NULL, traceparent TEXT);" }] },
    start: () => ({
      subscriptions: [
        {
          name: "projection",
          handlers: [
            on(ErrorInfoSchema, (event, meta, tx) => {
              const n = (runs.get(meta.id) ?? 0) + 1;
              runs.set(meta.id, n);
              (tx as SqliteTx).db.insert(notes).values({ eventId: meta.id, aggregateId: meta.aggregateId, reason: event.reason, traceparent: meta.headers.traceparent }).run();
              // After the insert: a failure must roll it back, and the retry write it once.
              if (event.reason === "flaky" && n === 1) throw new Error("flaky handler");
            }),
          ],
        },
      ],
    }),
  });
  return [writer, reader];
}

describe("platform on NATS JetStream", () => {
  let prefix: string;
  let dataDir: string;
  beforeEach(() => {
    prefix = randomPrefix();
    dataDir = tempDataDir();
  });
  afterEach(async () => {
    rmSync(dataDir, { recursive: true, force: true });
    await deleteStreams(SHARED_NATS, prefix);
  });

  const boot = (runs: Map<string, number>) =>
    bootModules(modules(runs), { dataDir, bus: PlatformConfigSchema.shape.bus.parse({ kind: "nats", backoffMs: [20], nats: { servers: [SHARED_NATS], prefix } }) });

  it("carries events from tx.publish to the consumer's transaction exactly once, across a restart", async () => {
    const runs = new Map<string, number>();
    let t = await boot(runs);
    try {
      const ready = await t.platform.fetch(new Request("http://x/readyz"));
      expect([ready.status, ((await ready.json()) as { checks: { bus: string } }).checks.bus]).toEqual([200, "nats"]);

      const ids: string[] = [];
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      for (let i = 0; i < 5; i++) {
        const notes = [0, 1, 2, 3].map((j) => ({ aggregateId: `agg-${j % 3}`, reason: i === 2 && j === 1 ? "flaky" : `r${i}.${j}` }));
        const res = await t.platform.fetch(
          new Request("http://x/test/notes", { method: "POST", body: JSON.stringify({ notes }), headers: { "content-type": "application/json", traceparent: `00-${traceId}-00f067aa0ba902b7-01` } }),
        );
        ids.push(...((await res.json()) as { ids: string[] }).ids);
      }
      await t.platform.settle();
      const reader = t.platform.storage("reader") as SqliteModuleStorage;
      const rows = () => reader.db.select().from(notes).all();
      expect(rows().map((r) => r.eventId).sort()).toEqual([...ids].sort());
      // The request's trace travelled through the outbox and NATS into the consumer.
      expect(rows().map((r) => r.traceparent?.split("-")[1])).toEqual(ids.map(() => traceId));
      const flaky = rows().find((r) => r.reason === "flaky")!;
      expect(runs.get(flaky.eventId)).toBe(2); // rolled back once, then applied
      // Events batched with the flaky one ran again after the batch rolled back; each wrote once (rows above).
      expect([...runs.values()].every((n) => n >= 1)).toBe(true);
      expect(runs.size).toBe(ids.length);
      const inbox = reader.db.all<{ n: number }>(sql`SELECT COUNT(*) AS n FROM selaras_inbox WHERE consumer = 'reader.projection'`);
      expect(inbox[0]!.n).toBe(ids.length);
      // The only instance reads all 4 partitions of the consumer (the default bus.nats.partitions).
      expect(await t.platform.metrics.text()).toContain('selaras_bus_partitions_held{consumer="reader.projection"} 4');

      await t.dispose();
      const runsBefore = [...runs.values()].reduce((a, b) => a + b, 0);
      t = await boot(runs);
      const res = await t.platform.fetch(new Request("http://x/test/notes", { method: "POST", body: JSON.stringify({ notes: [{ aggregateId: "agg-0", reason: "later" }] }) }));
      const [later] = ((await res.json()) as { ids: string[] }).ids;
      await waitFor(() => (t.platform.storage("reader") as SqliteModuleStorage).db.select().from(notes).all().length === ids.length + 1, { what: "the later event" });
      await t.platform.settle();
      expect(runs.get(later!)).toBe(1);
      // Resumed at the durable position: nothing consumed before the restart ran again.
      expect([...runs.values()].reduce((a, b) => a + b, 0)).toBe(runsBefore + 1);
    } finally {
      await t.dispose();
    }
  });

  it("keeps accepting writes while NATS is down, is not ready meanwhile, and delivers everything once it is back", async () => {
    const server = await NatsServer.start();
    const runs = new Map<string, number>();
    const t = await bootModules(modules(runs), {
      dataDir,
      bus: PlatformConfigSchema.shape.bus.parse({ kind: "nats", backoffMs: [20], nats: { servers: [server.url], prefix, reconnectWaitMs: 50, requestTimeoutMs: 1000 } }),
    });
    const write = async (reason: string) => {
      const res = await t.platform.fetch(new Request("http://x/test/notes", { method: "POST", body: JSON.stringify({ notes: [{ aggregateId: "agg", reason }] }) }));
      expect(res.status).toBe(200);
      return ((await res.json()) as { ids: string[] }).ids[0]!;
    };
    const readyz = async () => {
      const res = await t.platform.fetch(new Request("http://x/readyz"));
      return { status: res.status, bus: ((await res.json()) as { checks?: { bus: string } }).checks?.bus };
    };
    try {
      const ids = [await write("before")];
      await t.platform.settle();
      await server.stop();
      // Still ready (writes commit, events wait in the outbox), and it says the bus is away.
      await waitFor(async () => (await readyz()).bus?.startsWith("nats unreachable"), { what: "readiness to report the bus away" });
      expect((await readyz()).status).toBe(200);
      for (let i = 0; i < 5; i++) ids.push(await write(`during ${i}`)); // committed to the outbox
      // Metrics keep answering during the outage, and show the events waiting in the outbox.
      const metrics = await t.platform.fetch(new Request("http://x/metrics"));
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/selaras_outbox_backlog\{module="writer"\} [1-9]/);
      await server.restart();
      await waitFor(async () => (await readyz()).bus === "nats", { what: "the bus back" });
      ids.push(await write("after"));
      await t.platform.settle(20_000);
      // Once each, in order of processing (one aggregate).
      const applied = (t.platform.storage("reader") as SqliteModuleStorage).db.all<{ event_id: string }>(sql`SELECT event_id FROM notes ORDER BY rowid`);
      expect(applied.map((r) => r.event_id)).toEqual(ids);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await t.dispose();
      await server.dispose();
    }
  });
});
