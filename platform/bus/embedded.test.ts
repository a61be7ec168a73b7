import { rmSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { busConformance, CONFORMANCE, E, envelope, OTHER, record } from "./bus.conformance.ts";
import { openEmbeddedBus, type EmbeddedBus } from "./embedded.ts";
import type { EventEnvelope } from "./types.ts";

const logger = createLogger({ level: "error", sink: () => {} });
// batchSize 4: a consumer catching up reads the log many times before it goes live.
const open = (dataDir: string) => openEmbeddedBus({ dataDir, sqlite: { synchronous: "NORMAL" }, batchSize: 4, logger, ...CONFORMANCE });

busConformance("embedded", async () => {
  const dir = tempDataDir();
  return { open: () => open(dir), dispose: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe("embedded bus", () => {
  let dir: string;
  let bus: EmbeddedBus;
  beforeEach(async () => {
    dir = tempDataDir();
    bus = await open(dir);
  });
  afterEach(async () => {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps one log order across aggregates while a consumer catches up from the log and new events arrive in memory", async () => {
    const early = Array.from({ length: 50 }, (_, i) => envelope(`a${i % 3}`));
    await bus.publish(early);
    const { seen } = record(bus, "c1");
    const late: EventEnvelope[] = [];
    for (let i = 0; i < 30; i++) {
      const batch = [envelope(`a${i % 3}`), envelope(`a${i % 3}`, OTHER), envelope(`a${i % 3}`)];
      late.push(batch[0]!, batch[2]!);
      await bus.publish(batch);
      if (i % 5 === 0) await new Promise((r) => setImmediate(r));
    }
    const expected = [...early, ...late].map((e) => e.id);
    await waitFor(() => seen.length >= expected.length);
    expect(seen.map((d) => d.envelope.id)).toEqual(expected);
    expect(seen.map((d) => d.seq)).toEqual([...seen.map((d) => d.seq)].sort((a, b) => a - b));
  });

  it("counts each consumer's lag exactly as events of its types arrive, are handled and are dead-lettered", async () => {
    const lag = async () => (await bus.consumerLag()).get("c1");
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sub = bus.subscribe({
      consumer: "c1",
      types: [E],
      async handle(batch) {
        // Holds everything until released; "poison" fails every attempt and is dead-lettered.
        await gate;
        const results: Array<{ ok: true } | { ok: false; error: Error }> = [];
        for (const d of batch) {
          if (d.envelope.aggregateId === "poison") {
            results.push({ ok: false, error: new Error("poison") });
            break;
          }
          results.push({ ok: true });
        }
        return results;
      },
    });
    try {
      expect(await lag()).toBe(0);
      await bus.publish([envelope("a"), envelope("a", OTHER), envelope("b")]);
      expect(await lag()).toBe(2); // counted in the log
      await bus.publish([envelope("poison"), envelope("c"), envelope("c", OTHER)]);
      expect(await lag()).toBe(4); // kept in memory since
      release();
      await waitFor(async () => (await lag()) === 0, { what: "lag 0 after handling and one dead letter" });
      expect((await bus.deadLetters("c1")).map((d) => d.envelope.aggregateId)).toEqual(["poison"]);
      await bus.publish([envelope("d")]);
      await waitFor(async () => (await lag()) === 0, { what: "lag 0 again" });
    } finally {
      await sub.stop();
    }
  });

  it("keeps events for replay until every consumer passed them and they are older than retention", async () => {
    await bus.publish([envelope("x"), envelope("x")]);
    const { seen } = record(bus, "c1");
    await waitFor(() => seen.length === 2);
    expect(await bus.prune(Date.now() - 60_000)).toBe(0); // too young
    const r2 = record(bus, "c2", ["t.v1.Nothing"]); // a consumer that has not passed them
    expect(await bus.prune(Date.now() + 1)).toBe(0);
    await r2.sub.stop();
  });

  it("never prunes the events a read model is rebuilt from, and remembers what it pruned", async () => {
    const seen: string[] = [];
    const rm = bus.subscribe({
      consumer: "rm",
      types: [E],
      retain: true,
      async handle(batch) {
        seen.push(...batch.map((d) => d.envelope.id));
        return batch.map(() => ({ ok: true as const }));
      },
    });
    const other = record(bus, "c2", [OTHER]);
    await bus.publish([envelope("x", OTHER), envelope("x"), envelope("x", OTHER), envelope("x")]);
    await waitFor(() => seen.length === 2 && other.seen.length === 2);
    await waitFor(async () => [...(await bus.consumerLag()).values()].every((n) => n === 0));
    // Pausing writes the cursors (otherwise written within 50 ms).
    await rm.pause!();
    await other.sub.pause!();
    expect(await bus.prune(Date.now() + 1)).toBe(2); // the two OTHER events only
    expect(await bus.retained.gaps([E])).toEqual([]);
    expect(await bus.retained.gaps([E, OTHER])).toEqual([expect.stringMatching(/^log: t\.v1\.Other pruned up to seq 3$/)]);
    const replayed: string[] = [];
    for await (const b of bus.retained.read([E], {}, await bus.retained.head([E]), { batchSize: 10 })) replayed.push(...b.deliveries.map((d) => d.envelope.id));
    expect(replayed).toEqual(seen);
  });
});
