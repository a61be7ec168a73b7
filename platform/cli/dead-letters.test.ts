import { rmSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { openEmbeddedBus, type EmbeddedBus } from "../bus/embedded.ts";
import { createLogger } from "../observability/logger.ts";
import { tempDataDir, testConfig, waitFor } from "../../test/support/platform.ts";
import { deadLettersCommand } from "./dead-letters.ts";

const logger = createLogger({ level: "error", sink: () => {} });

describe("dead-letters command (embedded bus)", () => {
  let dir: string | undefined;
  let bus: EmbeddedBus | undefined;
  afterEach(async () => {
    await bus?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await deadLettersCommand(args, testConfig({ dataDir: dir! }), logger, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out: out.join("\n"), err: err.join("\n") };
  };

  it("lists dead letters and re-drives them to a running consumer, from another connection", async () => {
    dir = tempDataDir();
    bus = await openEmbeddedBus({ dataDir: dir, sqlite: { synchronous: "NORMAL" }, maxDeliver: 1, backoffMs: [5], batchSize: 8, logger });
    let healthy = false;
    const processed: string[] = [];
    bus.subscribe({
      consumer: "shop.projection",
      types: ["t.v1.E"],
      async handle(batch) {
        if (!healthy) return [{ ok: false, error: new Error("handler bug #42") }];
        for (const d of batch) processed.push(d.envelope.id);
        return batch.map(() => ({ ok: true as const }));
      },
    });
    await bus.publish([{ id: "ev-1", type: "t.v1.E", source: "shop", aggregateId: "order-7", payload: new Uint8Array([1]), headers: {}, occurredAt: Date.now() }]);
    await waitFor(async () => (await bus!.deadLetters()).length === 1);

    const list = await run(["list"]);
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/SEQ\s+CONSUMER\s+TYPE/);
    expect(list.out).toMatch(/shop\.projection\s+t\.v1\.E\s+order-7\s+1\s+.*handler bug #42/);
    expect((await run(["list", "someone.else"])).out).toBe("no dead letters");

    healthy = true; // the fix is deployed; the operator re-drives
    const redrive = await run(["redrive", "shop.projection"]);
    expect(redrive).toMatchObject({ code: 0, out: "re-driven: 1" });
    // The running subscription notices a re-drive made elsewhere (it looks once a second when idle).
    await waitFor(() => processed.includes("ev-1"), { what: "the re-driven event" });
    expect((await run(["list"])).out).toBe("no dead letters");
    expect(await run(["redrive", "shop.projection", "99"])).toMatchObject({ code: 1, out: "re-driven: 0" });
  });

  it("rejects bad usage and a data dir without a bus log, with exit 2 and 1", async () => {
    dir = tempDataDir();
    expect((await run(["frob"])).code).toBe(2);
    expect((await run(["redrive"])).code).toBe(2);
    expect((await run(["redrive", "c", "x"])).err).toMatch(/SEQ must be a positive integer/);
    const missing = await run(["list"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no embedded bus log at .*bus\.db/);
  });
});
