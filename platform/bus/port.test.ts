import { rmSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { busConformance, CONFORMANCE, E, envelope, OTHER, record } from "./bus.conformance.ts";
import { openEmbeddedBus, type EmbeddedBus } from "./embedded.ts";
import { BusPortClosedError, PortBus, serveBus } from "./port.ts";
import type { Bus, DeliveryResult, RetainedBatch, RetainedLog } from "./types.ts";

const logger = createLogger({ level: "error", sink: () => {} });
const open = (dataDir: string) => openEmbeddedBus({ dataDir, sqlite: { synchronous: "NORMAL" }, batchSize: 4, logger, ...CONFORMANCE });

/** A worker-side bus in this thread: a `PortBus` over a fresh channel to `serveBus(host)`. */
function connect(host: Bus) {
  const { port1, port2 } = new MessageChannel();
  const served = serveBus(host, port2);
  return { bus: new PortBus(port1, { logger }), served };
}

/** `bus` with some members replaced (the rest bound to it, so its private fields still work). */
function override(bus: EmbeddedBus, over: Partial<Bus>): Bus {
  return new Proxy(bus, {
    get: (target, key, receiver) => {
      if (key in over) return over[key as keyof Bus];
      const v = Reflect.get(target, key, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

busConformance("port", async () => {
  const dir = tempDataDir();
  return {
    async open() {
      const host = await open(dir);
      const { bus, served } = connect(host);
      const closePort = bus.close.bind(bus);
      // Closing the worker's bus closes everything behind it too, so the suite can reopen the dir.
      bus.close = async () => {
        await closePort();
        await served.close();
        await host.close();
      };
      return bus;
    },
    dispose: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describe("port bus", () => {
  let dir: string;
  let host: EmbeddedBus;
  const closing: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    dir = tempDataDir();
    host = await open(dir);
  });
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const link = (over: Partial<Bus> = {}) => {
    const c = connect(override(host, over));
    closing.push(() => c.served.close(), () => c.bus.close());
    return c;
  };

  it("carries a failing handler's error, name and cause across, and the event is delivered again", async () => {
    const seenByHost: DeliveryResult[][] = [];
    const { bus } = link({
      subscribe: (opts) => host.subscribe({ ...opts, handle: async (b) => (seenByHost.push([...(await opts.handle(b))]), seenByHost.at(-1)!) }),
    });
    const ev = envelope("x");
    const attempts: number[] = [];
    bus.subscribe({
      consumer: "c1",
      types: [E],
      async handle(batch) {
        return batch.map((d) => {
          attempts.push(d.attempt);
          if (d.attempt > 1) return { ok: true as const };
          const error = new TypeError("not yet", { cause: new Error("the root") });
          return { ok: false as const, error };
        });
      },
    });
    await bus.publish([ev]);
    await waitFor(async () => attempts.length === 2 && (await bus.consumerLag()).get("c1") === 0, { what: "the redelivery handled" });
    expect(attempts).toEqual([1, 2]);
    const failed = seenByHost[0]![0]!;
    expect(failed.ok).toBe(false);
    const error = (failed as { error: Error }).error;
    expect(error).toBeInstanceOf(Error);
    expect([error.name, error.message, (error.cause as Error).message]).toEqual(["TypeError", "not yet", "the root"]);
    expect(seenByHost[1]).toEqual([{ ok: true }]);
    expect(await bus.deadLetters("c1")).toEqual([]);
  });

  it("pauses at the checkpoint, reports the position and resumes, through the port", async () => {
    const { bus } = link();
    const { seen, sub } = record(bus, "c1");
    const main = record(host, "main-thread");
    await bus.publish([envelope("x"), envelope("y", OTHER), envelope("x")]);
    await waitFor(() => seen.length === 2 && main.seen.length === 2);
    // The main thread reports its own consumers: the port reports only those subscribed through it.
    expect(await bus.consumerLag()).toEqual(new Map([["c1", 0]]));
    const checkpoint = await sub.pause!();
    expect(checkpoint).toEqual({ log: 3 });
    expect(await sub.position!()).toEqual(checkpoint);
    await bus.publish([envelope("x"), envelope("z")]);
    await waitFor(async () => (await bus.consumerLag()).get("c1") === 2, { what: "lag 2 while paused" });
    expect(seen).toHaveLength(2);
    expect(await sub.position!()).toEqual(checkpoint);
    sub.resume!();
    await waitFor(() => seen.length === 4, { what: "the events published while paused" });
    await waitFor(async () => (await sub.position!()).log === 5, { what: "position 5" });
  });

  it("reads the retained log as the host does, and an abort ends the read on both sides", async () => {
    const events = Array.from({ length: 9 }, (_, i) => envelope(`a${i % 2}`, i % 3 === 0 ? OTHER : E));
    await host.publish(events);
    let gate: Promise<void> | undefined;
    let release = () => {};
    let hostReadsOpen = 0;
    const hostLog = host.retained;
    const retained: RetainedLog = {
      head: (t) => hostLog.head(t),
      gaps: (t) => hostLog.gaps(t),
      count: (t, a, u) => hostLog.count(t, a, u),
      async *read(t, a, u, o) {
        hostReadsOpen++;
        try {
          for await (const b of hostLog.read(t, a, u, o)) {
            yield b;
            await gate;
          }
        } finally {
          hostReadsOpen--;
        }
      },
    };
    const { bus } = link({ retained });
    const log = bus.retained!;
    const head = await log.head([E]);
    expect(head).toEqual(await hostLog.head([E]));
    expect(await log.count([E], {}, head)).toBe(await hostLog.count([E], {}, head));
    expect(await log.gaps([E])).toEqual([]);
    const collect = async (it: AsyncIterable<RetainedBatch>) => {
      const out: [string[], number][] = [];
      for await (const b of it) out.push([b.deliveries.map((d) => d.envelope.id), b.passed]);
      return out;
    };
    const direct = await collect(hostLog.read([E], { log: 1 }, head, { batchSize: 2 }));
    expect(direct.length).toBeGreaterThan(1);
    expect(await collect(log.read([E], { log: 1 }, head, { batchSize: 2 }))).toEqual(direct);
    expect(hostReadsOpen).toBe(0);

    // Aborted while the host is still producing the next batch: the read ends now, the host's once it can.
    gate = new Promise((r) => (release = r));
    const abort = new AbortController();
    const reading = log.read([E], {}, head, { batchSize: 2, signal: abort.signal })[Symbol.asyncIterator]();
    expect((await reading.next()).value?.deliveries).toHaveLength(2);
    const next = reading.next();
    abort.abort();
    await expect(next).rejects.toThrow(/abort/i);
    expect(await reading.next()).toEqual({ done: true, value: undefined });
    release();
    await waitFor(() => hostReadsOpen === 0, { what: "the host's read closed" });
    await expect(collect(log.read([E], {}, head, { batchSize: 2, signal: abort.signal }))).rejects.toThrow(/abort/i);
  });

  it("after close, rejects what is pending and what comes, and the host stops what it served", async () => {
    let publishing!: () => void;
    const { bus, served } = link({ publish: () => new Promise<void>((r) => (publishing = r)) });
    const { sub } = record(bus, "c1");
    await waitFor(async () => (await host.consumerLag()).has("c1"));
    const pending = bus.publish([envelope("x")]);
    await waitFor(() => publishing !== undefined, { what: "the publish on the host" });
    await bus.close();
    await expect(pending).rejects.toThrow(BusPortClosedError);
    await expect(pending).rejects.toThrow("bus port closed");
    await expect(bus.ping()).rejects.toThrow("bus port closed");
    expect(() => record(bus, "c2")).toThrow("bus port closed");
    expect((await host.consumerLag()).has("c1")).toBe(false);
    await sub.stop(); // already stopped: resolves
    await served.close(); // closed already when the worker's port closed
    publishing();
  });

  it("fails a batch in flight when the host closes, so the event is delivered again later", async () => {
    const ev = envelope("x");
    const first = link();
    let handed!: () => void;
    const handedIn = new Promise<void>((r) => (handed = r));
    first.bus.subscribe({
      consumer: "c1",
      types: [E],
      handle: async () => (handed(), new Promise<never>(() => {})), // a handler that never answers
    });
    await first.bus.publish([ev]);
    await handedIn;
    await first.served.close();
    await expect(first.bus.ping()).rejects.toThrow("bus port closed");
    expect((await host.consumerLag()).get("c1")).toBeUndefined();
    expect(await host.deadLetters("c1")).toEqual([]);

    const second = link();
    const { seen } = record(second.bus, "c1");
    await waitFor(() => seen.length === 1, { what: "the redelivery" });
    expect(seen[0]!.envelope.id).toBe(ev.id);
  });

  // The thread is lost while its handler has the event on its last allowed attempt: the host
  // closing is no verdict of the handler. Nothing is dead-lettered, and the next start delivers it.
  for (const redriven of [false, true]) {
    const what = redriven ? "a re-driven event (the re-drive stays for the next start)" : "a batch";
    it(`does not dead-letter ${what} cut off on its last attempt`, async () => {
      const ev = envelope("x");
      const first = link();
      const attempts: number[] = [];
      let lastHanded!: () => void;
      const onLast = new Promise<void>((r) => (lastHanded = r));
      let hangs = !redriven; // a re-drive needs a dead letter first: the first round fails on every attempt
      first.bus.subscribe({
        consumer: "c1",
        types: [E],
        handle: async ([d]) => {
          attempts.push(d!.attempt);
          if (!hangs || d!.attempt < CONFORMANCE.maxDeliver) return [{ ok: false as const, error: new Error("not yet") }];
          lastHanded();
          return new Promise<never>(() => {}); // the last attempt never answers: the thread is lost
        },
      });
      await first.bus.publish([ev]);
      if (redriven) {
        await waitFor(async () => (await host.deadLetters("c1")).length === 1, { what: "the first dead letter" });
        hangs = true;
        expect(await host.redrive("c1")).toBe(1);
      }
      await onLast;
      await first.served.close();
      expect(attempts).toEqual(redriven ? [1, 2, 3, 1, 2, 3] : [1, 2, 3]);
      expect(await host.deadLetters("c1")).toEqual([]);

      const second = link();
      const { seen } = record(second.bus, "c1");
      await waitFor(() => seen.length === 1, { what: "the delivery after the restart" });
      expect(seen[0]!.envelope.id).toBe(ev.id);
      expect(await host.deadLetters("c1")).toEqual([]);
    });
  }
});
