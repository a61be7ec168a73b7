import { rmSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import type { Bus, EventEnvelope } from "../bus/types.ts";
import { PlatformConfigSchema } from "../config/schema.ts";
import { createLogger } from "../observability/logger.ts";
import { Metrics } from "../observability/metrics.ts";
import type { PlatformStorage } from "../storage/module-storage.ts";
import { openModuleStorage } from "../storage/open.ts";
import { storageTestModule, testStorageDeps } from "../storage/storage.conformance.ts";
import { OutboxRelay } from "./relay.ts";

describe("outbox relay", () => {
  let dataDir: string;
  let opened: PlatformStorage;
  let storage: PlatformStorage;
  let relay: OutboxRelay | undefined;
  /** Every outbox read the relay asked for: its own reads, and the reads after a mark (how many rows). */
  let reads: Array<"read" | `mark+read ${number}` | "mark">;
  beforeEach(async () => {
    dataDir = tempDataDir();
    opened = (await openModuleStorage(PlatformConfigSchema.parse({ dataDir }), [storageTestModule()], testStorageDeps())).get("conf")!;
    reads = [];
    // The relay's view of the storage, its reads recorded.
    const recorded: Partial<PlatformStorage> = {
      readUnpublished: (limit) => (reads.push("read"), opened.readUnpublished(limit)),
      markPublished: (seq, at, next = 0) => (reads.push(next > 0 ? `mark+read ${next}` : "mark"), opened.markPublished(seq, at, next)),
    };
    storage = new Proxy(opened, {
      get: (target, prop) => {
        const value = recorded[prop as keyof PlatformStorage] ?? Reflect.get(target, prop, target);
        return typeof value === "function" && !(prop in recorded) ? value.bind(target) : value;
      },
    });
  });
  afterEach(async () => {
    await relay?.stop(1000);
    await opened.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const publish = (aggregate: string) => storage.transact((tx) => tx.publish(ErrorInfoSchema, aggregate, { reason: aggregate }));
  const start = (bus: Bus) => {
    relay = new OutboxRelay(storage, bus, { batchSize: 10, logger: createLogger({ level: "error", sink: () => {} }), metrics: new Metrics() });
    relay.start();
  };

  it("does not read after its mark when its read was short and nothing was committed since; reads when something was", async () => {
    const published: EventEnvelope[] = [];
    let during: Promise<unknown> | undefined;
    start({
      publish: async (events: EventEnvelope[]) => {
        published.push(...events);
        // While the bus takes "b", "c" commits: the mark must read it.
        if (events.some((e) => e.aggregateId === "b")) await (during = publish("c"));
      },
    } as unknown as Bus);
    await waitFor(() => reads.length > 0, { what: "the relay's first read" });
    reads.length = 0;

    await publish("a");
    await waitFor(() => published.length === 1, { what: "a on the bus" });
    await relay!.drained();
    // Woken by a's commit: one read, and a mark with no read after it.
    expect(reads).toEqual(["read", "mark"]);

    reads.length = 0;
    await publish("b");
    await waitFor(() => published.length === 3, { what: "b, and c committed while b was published" });
    await during;
    expect(published.map((e) => e.aggregateId)).toEqual(["a", "b", "c"]);
    // c's commit rang during the publish of b: the mark read it (no wait for a wake-up).
    expect(reads.slice(0, 2)).toEqual(["read", "mark+read 10"]);
    expect(await opened.readUnpublished(10)).toEqual([]);
  });
});
