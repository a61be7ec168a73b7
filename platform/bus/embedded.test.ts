import { rmSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { busConformance, CONFORMANCE, envelope, OTHER, record } from "./bus.conformance.ts";
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

  it("keeps events for replay until every consumer passed them and they are older than retention", async () => {
    await bus.publish([envelope("x"), envelope("x")]);
    const { seen } = record(bus, "c1");
    await waitFor(() => seen.length === 2);
    expect(await bus.prune(Date.now() - 60_000)).toBe(0); // too young
    const r2 = record(bus, "c2", ["t.v1.Nothing"]); // a consumer that has not passed them
    expect(await bus.prune(Date.now() + 1)).toBe(0);
    await r2.sub.stop();
  });
});
