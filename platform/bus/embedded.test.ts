import { rmSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { openEmbeddedBus, type EmbeddedBus } from "./embedded.ts";
import type { Delivery, EventEnvelope } from "./types.ts";

const logger = createLogger({ level: "error", sink: () => {} });
const open = (dataDir: string, over: Partial<Parameters<typeof openEmbeddedBus>[0]> = {}) =>
  openEmbeddedBus({ dataDir, synchronous: "NORMAL", maxDeliver: 3, backoffMs: [5], batchSize: 4, logger, ...over });

let n = 0;
function envelope(aggregateId: string, type = "t.v1.E"): EventEnvelope {
  n++;
  return { id: `e-${n}`, type, source: "test", aggregateId, payload: new Uint8Array([n % 256]), headers: {}, occurredAt: Date.now() };
}

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

  function record(consumer: string, types = ["t.v1.E"], fail?: (d: Delivery) => boolean) {
    const seen: Delivery[] = [];
    const sub = bus.subscribe({
      consumer,
      types,
      async handle(batch) {
        // Like the real consumer: stop at the first failure; the rest is redelivered after it.
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

  it("delivers in publish order, deduplicating event ids, filtered by type", async () => {
    const a = [envelope("x"), envelope("y"), envelope("x", "t.v1.Other"), envelope("x")];
    await bus.publish(a);
    await bus.publish([a[0]!]); // a relay retry after a crash: same id
    const { seen } = record("c1");
    await waitFor(() => seen.length >= 3);
    expect(seen.map((d) => d.envelope.id)).toEqual([a[0]!.id, a[1]!.id, a[3]!.id]);
    expect(await bus.consumerLag()).toEqual(new Map([["c1", 0]]));
  });

  it("keeps log order while a consumer catches up from the log and new events arrive in memory", async () => {
    const early = Array.from({ length: 50 }, (_, i) => envelope(`a${i % 3}`));
    await bus.publish(early);
    const { seen } = record("c1"); // batchSize 4: many reads of the log before it is live
    const late: EventEnvelope[] = [];
    for (let i = 0; i < 30; i++) {
      const batch = [envelope(`a${i % 3}`), envelope(`a${i % 3}`, "t.v1.Other"), envelope(`a${i % 3}`)];
      late.push(batch[0]!, batch[2]!);
      await bus.publish(batch);
      if (i % 5 === 0) await new Promise((r) => setImmediate(r));
    }
    const expected = [...early, ...late].map((e) => e.id);
    await waitFor(() => seen.length >= expected.length);
    expect(seen.map((d) => d.envelope.id)).toEqual(expected);
    expect(seen.map((d) => d.seq)).toEqual([...seen.map((d) => d.seq)].sort((a, b) => a - b));
  });

  it("resumes each consumer at its durable cursor after a restart", async () => {
    const first = [envelope("x"), envelope("x")];
    await bus.publish(first);
    const r1 = record("c1");
    await waitFor(() => r1.seen.length === 2);
    await bus.close();

    bus = await open(dir);
    const later = envelope("x");
    await bus.publish([later]);
    const r2 = record("c1");
    await waitFor(() => r2.seen.length >= 1);
    expect(r2.seen.map((d) => d.envelope.id)).toEqual([later.id]);
  });

  it("retries a failing delivery, then dead-letters it and moves on; a redrive delivers it again", async () => {
    const bad = envelope("x");
    const good = envelope("x");
    let healthy = false;
    const attempts: number[] = [];
    const { seen } = record("c1", ["t.v1.E"], (d) => {
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
    expect(dead.map((d) => [d.envelope.id, d.attempts, d.error])).toEqual([[bad.id, 3, `fail ${bad.id}`]]);

    healthy = true;
    expect(await bus.redrive("c1")).toBe(1);
    await waitFor(() => seen.some((d) => d.envelope.id === bad.id));
    expect(await bus.deadLetters("c1")).toEqual([]);
  });

  it("keeps events for replay until every consumer passed them and they are older than retention", async () => {
    await bus.publish([envelope("x"), envelope("x")]);
    const { seen } = record("c1");
    await waitFor(() => seen.length === 2);
    expect(await bus.prune(Date.now() - 60_000)).toBe(0); // too young
    const r2 = record("c2", ["t.v1.Nothing"]); // a consumer that has not passed them
    expect(await bus.prune(Date.now() + 1)).toBe(0);
    await r2.sub.stop();
  });
});
