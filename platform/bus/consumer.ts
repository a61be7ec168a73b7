import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { EventHandler, EventMeta, SubscriptionSpec } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import { childSpan, parseTraceparent, type Tracer } from "../observability/trace.ts";
import { DuplicateDelivery, type PlatformStorage, type PlatformTx } from "../storage/module-storage.ts";
import { WriteConflict } from "../storage/statements.ts";
import type { TraceContext } from "../observability/trace.ts";

/** A write conflict (the handler's loaded state changed meanwhile) is retried this often before the delivery fails. */
const MAX_CONFLICT_ATTEMPTS = 20;

/** A decoded delivery with its handler, and the handler's loaded state once loaded. */
interface Prepared {
  readonly handler: EventHandler<DescMessage>;
  readonly message: MessageShape<DescMessage>;
  readonly meta: EventMeta;
  readonly span: TraceContext;
  state: unknown;
}
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

  /** Decodes a delivery; a payload that does not decode is a poison message, not a duplicate. */
  const decode = (d: Delivery): Prepared => {
    const e = d.envelope;
    const handler = handlers.get(e.type);
    if (!handler) throw new Error(`${consumer}: no handler for ${e.type}`);
    const message = fromBinary(handler.event, e.payload);
    const meta: EventMeta = { id: e.id, type: e.type, source: e.source, aggregateId: e.aggregateId, occurredAt: e.occurredAt, headers: e.headers };
    return { handler, message, meta, span: childSpan(parseTraceparent(e.headers.traceparent)), state: undefined };
  };
  /** Runs the handler's read phase, if it has one (outside the transaction). */
  const load = async (p: Prepared): Promise<Prepared> => {
    if (p.handler.load) p.state = await tracer.run(p.span, () => p.handler.load!(p.message, p.meta));
    return p;
  };
  const apply = (tx: PlatformTx, p: Prepared): "processed" | "duplicate" => {
    if (!tx.claim(consumer, p.meta.id)) return "duplicate";
    tracer.run(p.span, () => p.handler.handle(p.message, p.meta, tx, p.state));
    return "processed";
  };

  // Label children resolved once: the per-event path does no label hashing.
  const counted = {
    processed: metrics.eventsConsumed.labels({ consumer, result: "processed" }),
    duplicate: metrics.eventsConsumed.labels({ consumer, result: "duplicate" }),
    failed: metrics.eventsConsumed.labels({ consumer, result: "failed" }),
  };
  const lag = metrics.consumerLagSeconds.labels({ consumer });
  const conflicts = metrics.eventsConsumed.labels({ consumer, result: "conflict-retried" });
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
        const decoded = batch.map(decode);
        const prepared = decoded.some((p) => p.handler.load) ? await Promise.all(decoded.map(load)) : decoded;
        const outcomes = await storage.transactInternal((tx) => prepared.map((p) => apply(tx, p)));
        record(outcomes, batch);
        return batch.map(() => ({ ok: true }));
      } catch (batchError) {
        // One delivery alone: only a conflict (load again) or a duplicate is worth another try.
        if (batch.length === 1 && !(batchError instanceof DuplicateDelivery) && !(batchError instanceof WriteConflict)) return [fail(batchError)];
      }
      const results: DeliveryResult[] = [];
      for (const d of batch) {
        const r = await one(d);
        results.push(r);
        if (!r.ok) break; // later deliveries are redelivered after this one: order per aggregate holds
      }
      return results;
    },
  };

  /** One delivery in its own transaction; a write conflict loads and runs it again, a few times. */
  async function one(d: Delivery): Promise<DeliveryResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        const p = await load(decode(d));
        const outcome = await storage.transactInternal((tx) => apply(tx, p));
        record([outcome], [d]);
        return { ok: true };
      } catch (err) {
        if (err instanceof DuplicateDelivery) {
          record(["duplicate"], [d]);
          return { ok: true };
        }
        if (err instanceof WriteConflict && attempt < MAX_CONFLICT_ATTEMPTS) {
          conflicts.inc();
          continue;
        }
        return fail(err);
      }
    }
  }

  function fail(err: unknown): DeliveryResult {
    counted.failed.inc();
    logger.debug("event handler failed", { consumer, err });
    return { ok: false, error: err instanceof Error ? err : new Error(String(err)) };
  }
}
