import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../observability/logger.ts";
import { deleteStreams, randomPrefix, SHARED_NATS } from "../../../test/support/nats-server.ts";
import { waitFor } from "../../../test/support/platform.ts";
import { busConformance, byAggregate, CONFORMANCE, E, envelope, OTHER, record } from "../bus.conformance.ts";
import type { Delivery, EventEnvelope } from "../types.ts";
import { openNatsBus, type NatsBusOptions } from "./index.ts";
import { consumerToken, leaseBucket, partitionOf } from "./names.ts";

const logger = createLogger({ level: process.env.SELARAS_TEST_LOGS === "1" ? "debug" : "error", sink: process.env.SELARAS_TEST_LOGS === "1" ? (l) => process.stderr.write(l + "\n") : () => {} });

/** Bus options for tests on the shared server: a prefix of their own, quick reconnects. */
function natsOptions(prefix: string, over: Partial<NatsBusOptions> = {}): NatsBusOptions {
  return {
    servers: [SHARED_NATS],
    prefix,
    partitions: 2,
    retentionHours: 1,
    duplicateWindowSeconds: 120,
    ackWaitSeconds: 30,
    requestTimeoutMs: 5000,
    reconnectWaitMs: 50,
    replicas: 1,
    maxAckPending: 512,
    batchSize: 64,
    leaseSeconds: 2,
    logger,
    ...CONFORMANCE,
    ...over,
  };
}

busConformance("NATS JetStream", async () => {
  const prefix = randomPrefix();
  return { open: () => openNatsBus(natsOptions(prefix)), dispose: async () => void (await deleteStreams(SHARED_NATS, prefix)) };
});

describe("NATS JetStream bus", () => {
  async function withPrefix<T>(body: (prefix: string) => Promise<T>): Promise<T> {
    const prefix = randomPrefix();
    try {
      return await body(prefix);
    } finally {
      await deleteStreams(SHARED_NATS, prefix);
    }
  }

  it("keeps each aggregate's events in order while its first event fails and is retried, with two instances pulling", () =>
    withPrefix(async (prefix) => {
      // A backoff long enough that, were the partition's later events handed out while the first
      // one waits for its retry, they would be processed before it.
      const opts = natsOptions(prefix, { partitions: 2, maxDeliver: 5, backoffMs: [40] });
      const [one, two] = [await openNatsBus(opts), await openNatsBus(opts)];
      try {
        const processed: EventEnvelope[] = [];
        const attempts = new Map<string, number[]>();
        const failing = new Set<string>();
        const handle = async (batch: readonly Delivery[]) => {
          const results = [];
          for (const d of batch) {
            const id = d.envelope.id;
            attempts.set(id, [...(attempts.get(id) ?? []), d.attempt]);
            await new Promise((r) => setImmediate(r)); // let the other instance interleave
            if (failing.has(id) && d.attempt < 3) {
              results.push({ ok: false as const, error: new Error("not yet") });
              break;
            }
            processed.push(d.envelope);
            results.push({ ok: true as const });
          }
          return results;
        };
        one.subscribe({ consumer: "orders.projection", types: [E], handle });
        two.subscribe({ consumer: "orders.projection", types: [E], handle });
        // One partition each once balanced (a partition changing hands restarts its attempt count).
        await waitFor(() => one.partitionsHeld("orders.projection") === 1 && two.partitionsHeld("orders.projection") === 1, { what: "one partition per instance" });
        const aggregates = ["A", "B", "C", "D", "E", "F"];
        const events = Array.from({ length: 60 }, (_, i) => envelope(aggregates[i % aggregates.length]!));
        // Each aggregate's first event fails twice before it succeeds.
        for (const a of aggregates) failing.add(events.find((e) => e.aggregateId === a)!.id);
        await one.publish(events.slice(0, 30));
        await two.publish(events.slice(30));
        await waitFor(() => processed.length >= events.length, { what: "every event processed" });
        expect(byAggregate(processed)).toEqual(byAggregate(events));
        for (const id of failing) expect(attempts.get(id)).toEqual([1, 2, 3]);
        expect(new Set(processed.map((e) => e.id)).size).toBe(events.length);
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    }));

  it("shares one durable consumer between two instances: each event is processed once in total", () =>
    withPrefix(async (prefix) => {
      const opts = natsOptions(prefix, { partitions: 3 });
      const [one, two] = [await openNatsBus(opts), await openNatsBus(opts)];
      try {
        const processed: Array<{ by: string; envelope: EventEnvelope }> = [];
        const instance = (by: string) => async (batch: readonly Delivery[]) => {
          await new Promise((r) => setImmediate(r));
          for (const d of batch) processed.push({ by, envelope: d.envelope });
          return batch.map(() => ({ ok: true as const }));
        };
        one.subscribe({ consumer: "history.projection", types: [E], handle: instance("one") });
        // The first instance takes every partition; when the second joins, the first hands over its excess.
        await waitFor(() => one.partitionsHeld("history.projection") === 3, { what: "the first instance reading all 3 partitions" });
        two.subscribe({ consumer: "history.projection", types: [E], handle: instance("two") });
        await waitFor(() => one.partitionsHeld("history.projection") + two.partitionsHeld("history.projection") === 3 && two.partitionsHeld("history.projection") >= 1 && one.partitionsHeld("history.projection") >= 1, {
          what: "the partitions spread over both instances",
        });
        expect(Math.max(one.partitionsHeld("history.projection"), two.partitionsHeld("history.projection"))).toBe(2);
        const events = Array.from({ length: 200 }, (_, i) => envelope(`agg-${i % 17}`));
        await one.publish(events);
        await waitFor(async () => processed.length >= events.length && (await one.consumerLag()).get("history.projection") === 0, { what: "all processed" });
        expect(processed.map((p) => p.envelope.id).sort()).toEqual(events.map((e) => e.id).sort());
        expect(byAggregate(processed)).toEqual(byAggregate(events));
        // Both instances took part.
        expect(new Set(processed.map((p) => p.by))).toEqual(new Set(["one", "two"]));
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    }));

  it("hands the partitions of a reader that died mid-batch to a standby after the lease TTL: what it held comes again, in order", () =>
    withPrefix(async (prefix) => {
      const opts = natsOptions(prefix, { partitions: 2, leaseSeconds: 1 });
      const dying = await openNatsBus(opts);
      let standby: Awaited<ReturnType<typeof openNatsBus>> | undefined;
      let finish = () => {};
      try {
        const seenByDying: string[] = [];
        const hung: Array<() => void> = [];
        // Takes its batches and does not finish them: no ack, no release — as if killed mid-transaction.
        dying.subscribe({
          consumer: "history.projection",
          types: [E],
          handle: (batch) => {
            seenByDying.push(...batch.map((d) => d.envelope.id));
            return new Promise((resolve) => hung.push(() => resolve(batch.map(() => ({ ok: false as const, error: new Error("killed") })))));
          },
        });
        finish = () => hung.forEach((h) => h());
        await waitFor(() => dying.partitionsHeld("history.projection") === 2, { what: "the first reader holding both partitions" });
        const events = Array.from({ length: 80 }, (_, i) => envelope(`agg-${i % 7}`));
        await dying.publish(events);
        await waitFor(() => seenByDying.length > 0, { what: "the first reader taking a batch" });
        dying.nc.close(); // the connection goes, the leases stay until they expire

        standby = await openNatsBus(opts);
        const processed: EventEnvelope[] = [];
        standby.subscribe({
          consumer: "history.projection",
          types: [E],
          handle: async (batch) => {
            processed.push(...batch.map((d) => d.envelope));
            return batch.map(() => ({ ok: true as const }));
          },
        });
        await waitFor(() => processed.length >= events.length, { what: "every event processed by the standby", timeoutMs: 20_000 });
        expect(byAggregate(processed)).toEqual(byAggregate(events));
        expect(processed).toHaveLength(events.length);
        expect(standby.partitionsHeld("history.projection")).toBe(2);
      } finally {
        await standby?.close();
        finish(); // lets the dead reader's stop() return
        await dying.close().catch(() => {});
      }
    }));

  it("takes only its share of free partitions when it joins a group with another live member, rather than all of them and handing some back", () =>
    withPrefix(async (prefix) => {
      const opts = natsOptions(prefix, { partitions: 2, leaseSeconds: 30 });
      const joining = await openNatsBus(opts);
      const hung: Array<() => void> = [];
      try {
        // Another member of the group, announced but holding no partition: one that has just
        // started, or one that died, until its announcement expires.
        const kv = await new Kvm(joining.js).create(leaseBucket(prefix), { history: 1, ttl: 30_000 });
        await kv.put(`members.${consumerToken("history.projection")}.other`, "");
        const onPartition = (p: number) => Array.from({ length: 50 }, (_, i) => `agg-${i}`).find((a) => partitionOf(a, 2) === p)!;
        await joining.publish([envelope(onPartition(0)), envelope(onPartition(1))]);
        const entered: string[] = [];
        // Batches that never finish: a partition taken by mistake could not be handed back.
        joining.subscribe({
          consumer: "history.projection",
          types: [E],
          handle: (batch) => {
            entered.push(...batch.map((d) => d.envelope.aggregateId));
            return new Promise((resolve) => hung.push(() => resolve(batch.map(() => ({ ok: true as const })))));
          },
        });
        await waitFor(() => entered.length > 0, { what: "the joining instance reading a batch" });
        expect(joining.partitionsHeld("history.projection")).toBe(1);
        expect(entered).toHaveLength(1);
      } finally {
        hung.forEach((h) => h());
        await joining.close();
      }
    }));

  it("pauses a subscription on every instance: the pausing one gathers all partitions and holds them; after resume they spread again", () =>
    withPrefix(async (prefix) => {
      const opts = natsOptions(prefix, { partitions: 3, leaseSeconds: 1 });
      const [one, two] = [await openNatsBus(opts), await openNatsBus(opts)];
      try {
        let resumed = false;
        const early: string[] = [];
        const processed: EventEnvelope[] = [];
        const later = new Set<string>();
        const instance = () => async (batch: readonly Delivery[]) => {
          for (const d of batch) {
            if (later.has(d.envelope.id) && !resumed) early.push(d.envelope.id);
            processed.push(d.envelope);
          }
          return batch.map(() => ({ ok: true as const }));
        };
        const subOne = one.subscribe({ consumer: "history.projection", types: [E], handle: instance() });
        two.subscribe({ consumer: "history.projection", types: [E], handle: instance() });
        await waitFor(() => one.partitionsHeld("history.projection") >= 1 && two.partitionsHeld("history.projection") >= 1, { what: "partitions on both instances" });
        const before = Array.from({ length: 30 }, (_, i) => envelope(`agg-${i % 5}`));
        await one.publish(before);
        await waitFor(() => processed.length >= before.length, { what: "the first events processed" });

        const checkpoint = await subOne.pause!();
        expect(one.partitionsHeld("history.projection")).toBe(3);
        expect(two.partitionsHeld("history.projection")).toBe(0);
        const after = Array.from({ length: 30 }, (_, i) => envelope(`agg-${i % 5}`));
        for (const e of after) later.add(e.id);
        await one.publish(after);
        // The events are in the streams, and still nobody takes them.
        await waitFor(async () => (await one.consumerLag()).get("history.projection") === after.length, { what: "the new events pending" });
        expect(await subOne.position!()).toEqual(checkpoint);
        expect(early).toEqual([]);

        resumed = true;
        subOne.resume!();
        await waitFor(() => processed.length >= before.length + after.length, { what: "the later events processed after resume" });
        await waitFor(() => two.partitionsHeld("history.projection") >= 1, { what: "partitions spread again" });
        expect(early).toEqual([]);
        expect(byAggregate(processed)).toEqual(byAggregate([...before, ...after]));
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    }));

  it("reads a subscription's events from every package stream it spans, and keeps envelopes intact", () =>
    withPrefix(async (prefix) => {
      const bus = await openNatsBus(natsOptions(prefix));
      try {
        const a = envelope("x", "t.v1.E");
        const b = { ...envelope("y", "u.v1.F"), headers: { traceparent: "00-abc-def-01", "x weird key": "a\nb", " padded": " v " } };
        await bus.publish([a, b]);
        const { seen } = record(bus, "multi", ["t.v1.E", "u.v1.F"]);
        await waitFor(() => seen.length === 2);
        const got = new Map(seen.map((d) => [d.envelope.id, d.envelope]));
        for (const e of [a, b]) expect({ ...got.get(e.id)!, payload: [...got.get(e.id)!.payload] }).toEqual({ ...e, payload: [...e.payload] });
        const streams: string[] = [];
        for await (const n of bus.jsm.streams.names()) if (n.startsWith(prefix.toUpperCase())) streams.push(n);
        const P = prefix.toUpperCase();
        // bus.nats.partitions = 2: two streams per package.
        expect(streams.sort()).toEqual([`${P}_DLQ`, `${P}_REDRIVE`, `${P}_T_V1`, `${P}_T_V1_P1`, `${P}_U_V1`, `${P}_U_V1_P1`]);
        const info = await bus.jsm.streams.info(`${P}_T_V1_P1`);
        expect(info.config.subjects).toEqual([`${prefix}.events.t.v1.*.1`]);
        expect(info.config.max_age).toBe(3_600 * 1e9); // bus.retentionHours = 1
        expect(info.config.duplicate_window).toBe(120 * 1e9);
      } finally {
        await bus.close();
      }
    }));

  it("updates existing streams and consumers in place when the configuration changes", () =>
    withPrefix(async (prefix) => {
      const first = await openNatsBus(natsOptions(prefix, { retentionHours: 1 }));
      const r1 = record(first, "c1", [E]);
      await first.publish([envelope("x")]);
      await waitFor(() => r1.seen.length === 1);
      await first.close();
      // Restarted with longer retention and a second type: same stream, same durable position.
      const second = await openNatsBus(natsOptions(prefix, { retentionHours: 2, duplicateWindowSeconds: 60 }));
      try {
        const later = envelope("x", OTHER);
        await second.publish([later]);
        const r2 = record(second, "c1", [E, OTHER]);
        await waitFor(() => r2.seen.length === 1);
        await waitFor(async () => (await second.consumerLag()).get("c1") === 0);
        expect(r2.seen.map((d) => d.envelope.id)).toEqual([later.id]);
        const info = await second.jsm.streams.info(`${prefix.toUpperCase()}_T_V1_P1`);
        expect([info.config.max_age, info.config.duplicate_window]).toEqual([7_200 * 1e9, 60 * 1e9]);
      } finally {
        await second.close();
      }
    }));

  it("refuses to start with another partition count while a consumer has events left in the streams of the old one; starts once they are read", () =>
    withPrefix(async (prefix) => {
      // Four partitions; c1 reads a first event, is stopped, and 12 more events wait for it.
      const four = await openNatsBus(natsOptions(prefix, { partitions: 4 }));
      const first = record(four, "c1");
      await four.publish([envelope("a0")]);
      await waitFor(() => first.seen.length === 1, { what: "c1 reading the first event" });
      await first.sub.stop();
      const waiting = Array.from({ length: 12 }, (_, i) => envelope(`a${i}`));
      await four.publish(waiting);
      await four.close();

      for (const partitions of [1, 8]) {
        const err = await openNatsBus(natsOptions(prefix, { partitions })).then(
          async (bus) => (await bus.close(), undefined),
          (e: Error) => e,
        );
        expect(err?.name, `partitions ${partitions}`).toBe("PartitionCountChanged");
        expect(err?.message).toContain(`bus.nats.partitions is ${partitions}`);
        expect(err?.message).toMatch(new RegExp(`${prefix.toUpperCase()}_T_V1(_P\\d)? \\(package t\\.v1, partition \\d\\): consumer c1 has \\d+ event\\(s\\) to read`));
      }

      // Back on four, c1 reads what waited; then one partition is accepted, and c1 reads on.
      const again = await openNatsBus(natsOptions(prefix, { partitions: 4 }));
      const rest = record(again, "c1");
      await waitFor(() => rest.seen.length === 12, { what: "c1 reading the 12 waiting events" });
      await waitFor(async () => (await again.consumerLag()).get("c1") === 0, { what: "c1's acks on the server" });
      await again.close();
      const one = await openNatsBus(natsOptions(prefix, { partitions: 1 }));
      try {
        const after = record(one, "c1");
        const later = envelope("a1");
        await one.publish([later]);
        await waitFor(() => after.seen.length === 1, { what: "c1 reading on one partition" });
        expect(after.seen[0]!.envelope.id).toBe(later.id);
      } finally {
        await one.close();
      }
    }));

  it("answers ping while connected, and refuses to publish or ping once closed", () =>
    withPrefix(async (prefix) => {
      const bus = await openNatsBus(natsOptions(prefix));
      await bus.ping();
      expect(bus.kind).toBe("nats");
      await bus.close();
      await expect(bus.ping()).rejects.toThrow(/closed/);
      await expect(bus.publish([envelope("x")])).rejects.toThrow(/closed/);
    }));

  it("fails to open with a clear error when no server answers", async () => {
    await expect(openNatsBus(natsOptions(randomPrefix(), { servers: ["nats://127.0.0.1:1"], requestTimeoutMs: 1000 }))).rejects.toThrow(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
    await expect(openNatsBus(natsOptions("Bad.Prefix"))).rejects.toThrow(/prefix "Bad.Prefix"/);
  });
});
