// The behaviour every `Bus` implementation must show, asserted the same way against each
// (embedded.test.ts, nats/nats.test.ts). Not a test file itself: each implementation's test
// file calls `busConformance` with a way to open its bus.
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../test/support/platform.ts";
import type { Bus, Delivery, EventEnvelope } from "./types.ts";

/** Conformance settings every target opens its bus with. */
export const CONFORMANCE = { maxDeliver: 3, backoffMs: [5] } as const;

/** One isolated place a bus lives in (a data directory, a subject prefix). */
export interface BusHome {
  /** Opens a bus here; after `close()`, opening again finds the same events and positions. */
  open(): Promise<Bus>;
  /** Removes everything the tests left. */
  dispose(): Promise<void>;
}

export const E = "t.v1.E";
export const OTHER = "t.v1.Other";

/** A test event; ids are unique across runs (a shared broker deduplicates by id). */
export function envelope(aggregateId: string, type = E): EventEnvelope {
  return { id: randomUUID(), type, source: "test", aggregateId, payload: new Uint8Array([1, 2, 3]), headers: { traceparent: `00-${"1".repeat(32)}-${"2".repeat(16)}-01` }, occurredAt: Date.now() };
}

/**
 * Subscribes a recording consumer. Like the platform's consumer, it handles a batch in order and
 * stops at the first failure (the rest is redelivered after it).
 */
export function record(bus: Bus, consumer: string, types: readonly string[] = [E], fail?: (d: Delivery) => boolean) {
  const seen: Delivery[] = [];
  const sub = bus.subscribe({
    consumer,
    types,
    async handle(batch) {
      const results = [];
      for (const d of batch) {
        if (fail?.(d)) {
          results.push({ ok: false as const, error: new Error(`fail ${d.envelope.id}`) });
          break;
        }
        seen.push(d);
        results.push({ ok: true as const });
      }
      return results;
    },
  });
  return { seen, sub };
}

/** Deliveries grouped by aggregate, as event ids in delivery order. */
export function byAggregate(deliveries: readonly { envelope: EventEnvelope }[] | readonly EventEnvelope[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const x of deliveries) {
    const e = "envelope" in x ? x.envelope : x;
    out.set(e.aggregateId, [...(out.get(e.aggregateId) ?? []), e.id]);
  }
  return out;
}

const lagOf = async (bus: Bus, consumer: string) => (await bus.consumerLag()).get(consumer);

/** Registers the conformance tests for one implementation. */
export function busConformance(name: string, makeHome: () => Promise<BusHome>): void {
  describe(`${name} bus: conformance`, () => {
    let home: BusHome;
    let bus: Bus;
    beforeEach(async () => {
      home = await makeHome();
      bus = await home.open();
    });
    afterEach(async () => {
      await bus.close();
      await home.dispose();
    });

    it("delivers every wanted event once, in order per aggregate, deduplicating ids and filtering by type", async () => {
      const a = [envelope("x"), envelope("y"), envelope("x", OTHER), envelope("x"), envelope("y")];
      await bus.publish(a);
      await bus.publish([a[0]!, a[1]!]); // a relay retry after a crash: the same ids
      const last = envelope("x");
      await bus.publish([last]);
      const { seen } = record(bus, "c1");
      await waitFor(() => seen.some((d) => d.envelope.id === last.id) && seen.some((d) => d.envelope.id === a[4]!.id));
      await waitFor(async () => (await lagOf(bus, "c1")) === 0, { what: "lag 0" });
      expect(byAggregate(seen)).toEqual(new Map([["x", [a[0]!.id, a[3]!.id, last.id]], ["y", [a[1]!.id, a[4]!.id]]]));
      expect(seen.map((d) => d.attempt)).toEqual(seen.map(() => 1));
      // Envelopes arrive as published.
      const first = seen.find((d) => d.envelope.id === a[0]!.id)!.envelope;
      expect({ ...first, payload: [...first.payload] }).toEqual({ ...a[0]!, payload: [...a[0]!.payload] });
      expect(await bus.consumerLag()).toEqual(new Map([["c1", 0]]));
    });

    it("keeps order per aggregate while a consumer catches up and new events keep arriving", async () => {
      const early = Array.from({ length: 40 }, (_, i) => envelope(`a${i % 3}`));
      await bus.publish(early);
      const { seen } = record(bus, "c1");
      const late: EventEnvelope[] = [];
      for (let i = 0; i < 20; i++) {
        const batch = [envelope(`a${i % 3}`), envelope(`a${i % 3}`, OTHER), envelope(`a${(i + 1) % 3}`)];
        late.push(batch[0]!, batch[2]!);
        await bus.publish(batch);
        if (i % 5 === 0) await new Promise((r) => setImmediate(r));
      }
      const expected = [...early, ...late];
      await waitFor(() => seen.length >= expected.length, { what: `${expected.length} deliveries` });
      expect(byAggregate(seen)).toEqual(byAggregate(expected));
      for (const seqs of byAggregate(seen).keys()) {
        const s = seen.filter((d) => d.envelope.aggregateId === seqs).map((d) => d.seq);
        expect(s).toEqual([...s].sort((p, q) => p - q));
      }
    });

    it("resumes each consumer at its durable position after a restart", async () => {
      const first = [envelope("x"), envelope("x")];
      await bus.publish(first);
      const r1 = record(bus, "c1");
      await waitFor(() => r1.seen.length === 2);
      await waitFor(async () => (await lagOf(bus, "c1")) === 0);
      await bus.close();

      bus = await home.open();
      const later = envelope("x");
      await bus.publish([later]);
      const r2 = record(bus, "c1");
      await waitFor(() => r2.seen.length >= 1);
      await waitFor(async () => (await lagOf(bus, "c1")) === 0);
      expect(r2.seen.map((d) => d.envelope.id)).toEqual([later.id]);
    });

    it("retries a failing delivery, then dead-letters it and moves on; a redrive delivers it again", async () => {
      const bad = envelope("x");
      const good = envelope("x");
      let healthy = false;
      const attempts: number[] = [];
      const { seen } = record(bus, "c1", [E], (d) => {
        if (d.envelope.id !== bad.id) return false;
        attempts.push(d.attempt);
        return !healthy;
      });
      await bus.publish([bad, good]);
      await waitFor(() => seen.some((d) => d.envelope.id === good.id));
      expect(attempts).toEqual([1, 2, 3]);
      // Order per aggregate: the later event was not delivered before the earlier one gave up.
      expect(seen.map((d) => d.envelope.id)).toEqual([good.id]);
      const dead = await bus.deadLetters("c1");
      expect(dead.map((d) => [d.consumer, d.envelope.id, d.envelope.aggregateId, d.attempts, d.error])).toEqual([["c1", bad.id, "x", 3, `fail ${bad.id}`]]);
      expect(await bus.deadLetters("c2")).toEqual([]);
      expect((await bus.deadLetters()).map((d) => d.envelope.id)).toEqual([bad.id]);

      healthy = true;
      expect(await bus.redrive("c1")).toBe(1);
      await waitFor(() => seen.some((d) => d.envelope.id === bad.id));
      expect(seen.find((d) => d.envelope.id === bad.id)?.attempt).toBe(1);
      expect(await bus.deadLetters("c1")).toEqual([]);
      await waitFor(async () => (await lagOf(bus, "c1")) === 0);
      expect(seen.map((d) => d.envelope.id)).toEqual([good.id, bad.id]);
    });

    it("takes a handler that throws as a failed delivery: retried, then dead-lettered, and the consumer goes on", async () => {
      const [bad, good] = [envelope("x"), envelope("y")];
      const attempts: number[] = [];
      const seen: string[] = [];
      bus.subscribe({
        consumer: "c1",
        types: [E],
        async handle(batch) {
          if (batch[0]!.envelope.id === bad.id) {
            attempts.push(batch[0]!.attempt);
            throw new Error("handler threw");
          }
          seen.push(...batch.map((d) => d.envelope.id));
          return batch.map(() => ({ ok: true as const }));
        },
      });
      await bus.publish([bad]);
      await waitFor(async () => (await bus.deadLetters("c1")).length === 1, { what: "the dead letter" });
      expect(attempts).toEqual([1, 2, 3]);
      expect((await bus.deadLetters("c1"))[0]!.error).toContain("handler threw");
      await bus.publish([good]);
      await waitFor(() => seen.includes(good.id), { what: "the next event delivered" });
    });

    it("redrives one dead letter by its seq, only to its own consumer", async () => {
      const [b1, b2] = [envelope("x"), envelope("y")];
      const healthy = new Set<string>();
      const c1 = record(bus, "c1", [E], (d) => !healthy.has(d.envelope.id));
      const c2 = record(bus, "c2");
      await bus.publish([b1, b2]);
      await waitFor(async () => (await bus.deadLetters("c1")).length === 2, { what: "two dead letters" });
      expect(c2.seen.map((d) => d.envelope.id).sort()).toEqual([b1.id, b2.id].sort());
      const one = (await bus.deadLetters("c1")).find((d) => d.envelope.id === b2.id)!;
      healthy.add(b2.id);
      expect(await bus.redrive("c1", one.seq)).toBe(1);
      await waitFor(() => c1.seen.length === 1);
      expect(c1.seen[0]!.envelope.id).toBe(b2.id);
      expect((await bus.deadLetters("c1")).map((d) => d.envelope.id)).toEqual([b1.id]);
      await waitFor(async () => (await lagOf(bus, "c2")) === 0);
      expect(c2.seen).toHaveLength(2); // the redrive went to c1 only
    });

    it("reports lag: events not yet processed, per consumer", async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const seen: string[] = [];
      bus.subscribe({
        consumer: "slow",
        types: [E],
        async handle(batch) {
          await gate;
          seen.push(...batch.map((d) => d.envelope.id));
          return batch.map(() => ({ ok: true as const }));
        },
      });
      record(bus, "idle", ["t.v1.Nothing"]);
      const events = [envelope("x"), envelope("x"), envelope("x")];
      await bus.publish(events);
      await waitFor(async () => (await lagOf(bus, "slow")) === 3, { what: "lag 3" });
      await waitFor(async () => (await lagOf(bus, "idle")) === 0, { what: "no lag for a consumer of other types" });
      release();
      await waitFor(async () => (await lagOf(bus, "slow")) === 0, { what: "lag 0" });
      expect(seen).toEqual(events.map((e) => e.id));
    });

    it("pauses a consumer after the batch in flight at its checkpoint, replays the retained events up to it, and resumes", async () => {
      const early = [envelope("x"), envelope("y"), envelope("x", OTHER), envelope("y"), envelope("x")];
      await bus.publish(early);
      let gate: Promise<void> | undefined;
      let release = () => {};
      const seen: Delivery[] = [];
      const sub = bus.subscribe({
        consumer: "c1",
        types: [E],
        async handle(batch) {
          await gate;
          seen.push(...batch);
          return batch.map(() => ({ ok: true as const }));
        },
      });
      await waitFor(() => seen.length === 4, { what: "the early events" });
      // A delivery in flight when pause is called is finished first, and counted in the checkpoint.
      gate = new Promise((r) => (release = r));
      const inFlight = envelope("y");
      await bus.publish([inFlight]);
      await waitFor(async () => (await lagOf(bus, "c1")) === 1, { what: "the in-flight delivery" });
      let paused = false;
      const pausing = sub.pause!().then((p) => ((paused = true), p));
      await new Promise((r) => setImmediate(r));
      expect(paused).toBe(false);
      release();
      const checkpoint = await pausing;
      expect(seen.map((d) => d.envelope.id)).toContain(inFlight.id);
      expect(await sub.position!()).toEqual(checkpoint);

      // Paused: new events wait.
      const later = [envelope("x"), envelope("z")];
      await bus.publish(later);
      await waitFor(async () => (await lagOf(bus, "c1")) === 2, { what: "lag 2 while paused" });
      expect(seen).toHaveLength(5);
      expect(await sub.position!()).toEqual(checkpoint);

      // The retained events up to the checkpoint are exactly what the consumer was handed.
      const log = bus.retained!;
      expect(await log.gaps([E])).toEqual([]);
      const replayed: Delivery[] = [];
      let passed = 0;
      for await (const b of log.read([E], {}, checkpoint, { batchSize: 2 })) {
        replayed.push(...b.deliveries);
        passed += b.passed;
      }
      expect(passed).toBe(await log.count([E], {}, checkpoint));
      expect(byAggregate(replayed)).toEqual(byAggregate(seen));
      const head = await log.head([E]);
      const rest: string[] = [];
      for await (const b of log.read([E], checkpoint, head, { batchSize: 10 })) rest.push(...b.deliveries.map((d) => d.envelope.id));
      expect(rest.sort()).toEqual(later.map((e) => e.id).sort());

      sub.resume!();
      await waitFor(() => seen.length === 7, { what: "the events published while paused" });
      await waitFor(async () => (await lagOf(bus, "c1")) === 0);
      const after = await sub.position!();
      // Nothing the consumer wants lies between its position and the head any more.
      expect(await log.count([E], after, await log.head([E]))).toBe(0);
    });

    it("lingers: holds a batch back for more events until it is full or lingerMs passed; stopping cuts the wait short and loses nothing", async () => {
      const batchesOf = (consumer: string, lingerMs?: number) => {
        const batches: string[][] = [];
        const sub = bus.subscribe({ consumer, types: [E], lingerMs, handle: async (batch) => (batches.push(batch.map((d) => d.envelope.id)), batch.map(() => ({ ok: true as const }))) });
        return { batches, sub };
      };
      const long = batchesOf("long", 600_000);
      const short = batchesOf("short", 50);
      const witness = record(bus, "witness");
      // One event at a time, each seen by a consumer that does not linger before the next goes out.
      const sent: string[] = [];
      while (long.batches.length === 0) {
        const e = envelope("a");
        await bus.publish([e]);
        sent.push(e.id);
        await waitFor(() => witness.seen.length === sent.length, { what: `the witness's delivery ${sent.length}` });
        if (sent.length > 1000) throw new Error("the lingering consumer never got a full batch");
      }
      // The long linger held the events back until they filled a batch (the bus's batchSize); more
      // may have gone out before the loop saw that batch: they linger in the next one.
      const [full] = long.batches;
      expect(full!.length).toBeGreaterThan(1);
      expect(full).toEqual(sent.slice(0, full!.length));
      // The short linger delivered every event once its 50 ms passed, however it grouped them.
      await waitFor(() => short.batches.flat().length === sent.length, { what: "the short linger's deliveries" });
      expect(short.batches.flat()).toEqual(sent);

      // Stopping while a batch lingers: the stop does not wait out the linger (600 s), nothing more
      // is delivered, and the next subscription gets what lingered.
      const tail = envelope("a");
      await bus.publish([tail]);
      await waitFor(() => witness.seen.length === sent.length + 1, { what: "the witness's last delivery" });
      await long.sub.stop();
      expect(long.batches).toEqual([full]);
      const again = record(bus, "long");
      const lingered = [...sent.slice(full!.length), tail.id];
      await waitFor(() => again.seen.length >= lingered.length, { what: "the lingering events, after the restart" });
      expect(again.seen.map((d) => d.envelope.id)).toEqual(lingered);
    });

    it("refuses the same consumer twice on one bus", () => {
      record(bus, "c1");
      expect(() => record(bus, "c1")).toThrow(/subscribed twice/);
    });
  });
}
