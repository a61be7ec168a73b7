import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import type { EventHandler, EventMeta, SubscriptionSpec } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import { childSpan, parseTraceparent, type Tracer } from "../observability/trace.ts";
import { DuplicateDelivery, type PlatformStorage, type PlatformTx } from "../storage/module-storage.ts";
import type { Delivery, DeliveryResult, SubscribeOptions } from "./types.ts";

/**
 * Turns a module's subscription into bus subscribe options: each delivery is decoded, its handler
 * runs in the module's own transaction together with the inbox entry for the event id, so a
 * redelivered event has no second effect. A batch is tried in one transaction; if that fails, the
 * deliveries run one by one so a single bad event cannot hold the others back.
 */
export function createConsumer(opts: {
  module: string;
  spec: SubscriptionSpec;
  storage: PlatformStorage;
  tracer: Tracer;
  logger: Logger;
  metrics: Metrics;
}): SubscribeOptions {
  const { module, spec, storage, tracer, metrics, logger } = opts;
  const consumer = `${module}.${spec.name}`;
  const handlers = new Map<string, EventHandler<DescMessage>>();
  for (const h of spec.handlers) {
    if (handlers.has(h.event.typeName)) throw new Error(`${consumer}: two handlers for ${h.event.typeName}`);
    handlers.set(h.event.typeName, h as EventHandler<DescMessage>);
  }

  const apply = (tx: PlatformTx, d: Delivery): "processed" | "duplicate" => {
    const e = d.envelope;
    const handler = handlers.get(e.type);
    if (!handler) throw new Error(`${consumer}: no handler for ${e.type}`);
    // Decode before claiming: a payload that does not decode is a poison message, not a duplicate.
    const message = fromBinary(handler.event, e.payload);
    if (!tx.claim(consumer, e.id)) return "duplicate";
    const meta: EventMeta = { id: e.id, type: e.type, source: e.source, aggregateId: e.aggregateId, occurredAt: e.occurredAt, headers: e.headers };
    tracer.run(childSpan(parseTraceparent(e.headers.traceparent)), () => handler.handle(message, meta, tx));
    return "processed";
  };

  // Label children resolved once: the per-event path does no label hashing.
  const counted = {
    processed: metrics.eventsConsumed.labels({ consumer, result: "processed" }),
    duplicate: metrics.eventsConsumed.labels({ consumer, result: "duplicate" }),
    failed: metrics.eventsConsumed.labels({ consumer, result: "failed" }),
  };
  const lag = metrics.consumerLagSeconds.labels({ consumer });
  const record = (outcomes: Array<"processed" | "duplicate">, batch: readonly Delivery[]) => {
    const now = Date.now();
    outcomes.forEach((o, i) => {
      counted[o].inc();
      if (o === "processed") lag.observe((now - batch[i]!.envelope.occurredAt) / 1000);
    });
  };

  return {
    consumer,
    types: [...handlers.keys()],
    async handle(batch): Promise<DeliveryResult[]> {
      try {
        const outcomes = await storage.transactInternal((tx) => batch.map((d) => apply(tx, d)));
        record(outcomes, batch);
        return batch.map(() => ({ ok: true }));
      } catch (batchError) {
        if (batch.length === 1 && !(batchError instanceof DuplicateDelivery)) return [fail(batchError)];
      }
      const results: DeliveryResult[] = [];
      for (const d of batch) {
        try {
          const outcome = await storage.transactInternal((tx) => apply(tx, d));
          record([outcome], [d]);
          results.push({ ok: true });
        } catch (err) {
          if (err instanceof DuplicateDelivery) {
            record(["duplicate"], [d]);
            results.push({ ok: true });
            continue;
          }
          results.push(fail(err));
          break; // later deliveries are redelivered after this one: order per aggregate holds
        }
      }
      return results;
    },
  };

  function fail(err: unknown): DeliveryResult {
    counted.failed.inc();
    logger.debug("event handler failed", { consumer, err });
    return { ok: false, error: err instanceof Error ? err : new Error(String(err)) };
  }
}
