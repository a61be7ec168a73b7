// Fault tests on a nats-server of their own (a free port, a temp store): stopped gracefully or
// killed with SIGKILL while events are being published and consumed, then restarted on the same
// store. The shared server is never disturbed.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../observability/logger.ts";
import { NatsServer } from "../../../test/support/nats-server.ts";
import { waitFor } from "../../../test/support/platform.ts";
import { byAggregate, CONFORMANCE, E, envelope } from "../bus.conformance.ts";
import type { EventEnvelope } from "../types.ts";
import { openNatsBus, type NatsBus } from "./index.ts";

const logger = createLogger({ level: "error", sink: () => {} });

describe("NATS JetStream bus: server faults", () => {
  let server: NatsServer;
  let bus: NatsBus;
  beforeEach(async () => {
    server = await NatsServer.start();
    bus = await openNatsBus({
      servers: [server.url],
      prefix: "faults",
      partitions: 2,
      retentionHours: 1,
      duplicateWindowSeconds: 120,
      // An ack lost with a killed server is redelivered after this; it bounds the test's wait.
      ackWaitSeconds: 2,
      requestTimeoutMs: 1000,
      reconnectWaitMs: 50,
      replicas: 1,
      maxAckPending: 512,
      batchSize: 64,
      // A reader that lost its connection gives its partitions up after this.
      leaseSeconds: 2,
      logger,
      ...CONFORMANCE,
    });
  });
  afterEach(async () => {
    await bus.close();
    await server.dispose();
  });

  /**
   * A consumer with an inbox, as the platform's: the first delivery of an id has the effect,
   * later ones are recognised as duplicates.
   */
  function inboxConsumer() {
    const effects: EventEnvelope[] = [];
    const deliveries = new Map<string, number>();
    bus.subscribe({
      consumer: "history.projection",
      types: [E],
      async handle(batch) {
        for (const d of batch) {
          const n = (deliveries.get(d.envelope.id) ?? 0) + 1;
          deliveries.set(d.envelope.id, n);
          if (n === 1) effects.push(d.envelope);
        }
        return batch.map(() => ({ ok: true as const }));
      },
    });
    return { effects, deliveries };
  }

  /** Publishes batches one after the other like the outbox relay — each retried until acknowledged — until `halt()`. */
  function relay() {
    const published: EventEnvelope[] = [];
    let halted = false;
    const state = { published, rejections: 0, halt: () => void (halted = true) };
    const run = (async () => {
      for (let i = 0; !halted; i++) {
        const batch = Array.from({ length: 10 }, (_, j) => envelope(`agg-${(i * 10 + j) % 7}`));
        await waitFor(
          async () => {
            try {
              await bus.publish(batch);
              return true;
            } catch {
              state.rejections++;
              return false;
            }
          },
          { timeoutMs: 30_000, intervalMs: 20, what: `batch ${i} published` },
        );
        published.push(...batch);
        await new Promise((r) => setImmediate(r));
      }
    })();
    return Object.assign(state, { finished: run });
  }

  /** Lets the relay publish `more` events after the server came back, then stops it and checks the consumer. */
  async function assertExactlyOnce(relayed: ReturnType<typeof relay>, consumer: ReturnType<typeof inboxConsumer>, more = 100) {
    const before = relayed.published.length;
    await waitFor(() => relayed.published.length >= before + more, { timeoutMs: 30_000, what: "publishing after the restart" });
    relayed.halt();
    await relayed.finished;
    const ids = new Set(relayed.published.map((e) => e.id));
    await waitFor(() => consumer.effects.length >= ids.size, { timeoutMs: 30_000, what: `${ids.size} events consumed` });
    await waitFor(async () => (await bus.consumerLag()).get("history.projection") === 0, { timeoutMs: 30_000, what: "lag 0" });
    // Every acknowledged event arrived, none was invented, each had its effect once, in order per aggregate.
    expect(consumer.effects.map((e) => e.id).sort()).toEqual([...ids].sort());
    expect(byAggregate(consumer.effects)).toEqual(byAggregate(relayed.published));
  }

  it("rejects publishes while the server is stopped, and delivers everything exactly once after it restarts", async () => {
    const consumer = inboxConsumer();
    const relayed = relay();
    await waitFor(() => relayed.published.length >= 100 && consumer.effects.length > 0);
    await server.stop();
    await waitFor(() => relayed.rejections > 0, { what: "a rejected publish" });
    await expect(bus.ping()).rejects.toThrow();
    await expect(bus.publish([envelope("x")])).rejects.toThrow(/unreachable|timeout|TIMEOUT|closed|disconnect/i);

    await server.restart();
    await waitFor(async () => (await bus.ping().then(() => true, () => false)) || undefined, { what: "ping after restart" });
    await assertExactlyOnce(relayed, consumer);
  });

  it("survives kill -9 of the server mid-stream: after a restart on the same store everything arrives exactly once", async () => {
    const consumer = inboxConsumer();
    const relayed = relay();
    await waitFor(() => relayed.published.length >= 100 && consumer.effects.length > 0);
    await server.kill();
    await waitFor(() => relayed.rejections > 0, { what: "a rejected publish" });
    await server.restart();
    await assertExactlyOnce(relayed, consumer);
  });

  it("closes while the server is down, and a new bus resumes where the consumer stopped", async () => {
    const consumer = inboxConsumer();
    const first = [envelope("x"), envelope("x")];
    await bus.publish(first);
    await waitFor(() => consumer.effects.length === 2);
    await waitFor(async () => (await bus.consumerLag()).get("history.projection") === 0);
    // Graceful: the server keeps the consumer's acks (after a kill -9 the last ones can be lost
    // and their events delivered again, which the inbox absorbs — see the test above).
    await server.stop();
    await bus.close(); // bounded by requestTimeoutMs, not by the server coming back
    await server.restart();
    bus = await openNatsBus({ ...bus.opts });
    const later = envelope("x");
    await bus.publish([later]);
    const again = inboxConsumer();
    await waitFor(() => again.effects.some((e) => e.id === later.id));
    expect(again.effects.map((e) => e.id)).toEqual([later.id]);
  });
});
