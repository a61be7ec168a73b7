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

/** How long a delivery waits for its module's database to come back before it counts as failed (kept below NATS's default ack wait of 30 s). */
const STORAGE_OUTAGE_MS = 20_000;

/**
 * In-process locks by key; several keys are taken in sorted order, so two takers cannot deadlock.
 * One per module: its subscriptions' `serializeBy` keys name the module's own resources.
 */
export class KeyedLocks {
  readonly #tails = new Map<string, Promise<void>>();

  async acquire(keys: readonly string[]): Promise<() => void> {
    const releases: Array<() => void> = [];
    for (const key of [...new Set(keys)].sort()) {
      const previous = this.#tails.get(key);
      let release!: () => void;
      const mine = new Promise<void>((r) => (release = r));
      const tail = previous ? previous.then(() => mine) : mine;
      this.#tails.set(key, tail);
      // A free key is taken without yielding: a batch of many keys costs no event-loop turns.
      if (previous) await previous;
      releases.push(() => {
        release();
        if (this.#tails.get(key) === tail) this.#tails.delete(key);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const r of releases) r();
    };
  }
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * True for errors that say the database could not be reached, rather than that the handler or
 * its writes failed: connection refused or reset, postgres.js and Bun.sql connection errors,
 * SQLSTATE class 08 (connection exception), 53300 (too many connections), 57P0x (server shutting
 * down) — in `code` (postgres.js) or `errno` (Bun.sql) — and SQLite busy/locked. Looks through
 * `cause` chains (drizzle wraps a failed read).
 */
export function isUnreachable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, errno } = e as { code?: unknown; errno?: unknown };
    if (/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|CONNECTION_|ERR_POSTGRES_(CONNECTION_|IDLE_TIMEOUT|LIFETIME_TIMEOUT)|SQLITE_BUSY|SQLITE_LOCKED)/.test(String(code ?? ""))) return true;
    for (const state of [code, errno]) if (typeof state === "string" && /^08|^53300$|^57P0/.test(state)) return true;
  }
  return false;
}

/** A decoded delivery with its handler, and the handler's loaded state once loaded. */
interface Prepared {
  readonly handler: EventHandler<DescMessage>;
  readonly message: MessageShape<DescMessage>;
  readonly meta: EventMeta;
  /** Absent when the consumer does not trace (a rebuild). */
  readonly span: TraceContext | undefined;
  state: unknown;
}
import { failedDelivery, type Delivery, type DeliveryResult, type SubscribeOptions } from "./types.ts";

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
  metrics: Pick<Metrics, "eventsConsumed" | "consumerLagSeconds">;
  /** The module's locks, shared by its subscriptions (default: this subscription's own). */
  locks?: KeyedLocks;
  /**
   * Whether each delivery runs in a span continuing the event's trace (default true). A rebuild
   * turns it off: what it writes is a copy, and it publishes nothing a trace could follow.
   */
  traced?: boolean;
}): SubscribeOptions {
  const { module, spec, storage, tracer, metrics, logger } = opts;
  const traced = opts.traced ?? true;
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
    return { handler, message, meta, span: traced ? childSpan(parseTraceparent(e.headers.traceparent)) : undefined, state: undefined };
  };
  /** Runs the handler's read phase, if it has one (outside the transaction). */
  const load = async (p: Prepared): Promise<Prepared> => {
    if (p.handler.load) p.state = p.span ? await tracer.run(p.span, () => p.handler.load!(p.message, p.meta)) : await p.handler.load(p.message, p.meta);
    return p;
  };
  const apply = (tx: PlatformTx, p: Prepared): "processed" | "duplicate" => {
    if (!tx.claim(consumer, p.meta.id)) return "duplicate";
    if (p.span) tracer.run(p.span, () => p.handler.handle(p.message, p.meta, tx, p.state));
    else p.handler.handle(p.message, p.meta, tx, p.state);
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
  const locks = opts.locks ?? new KeyedLocks();
  const unavailable = metrics.eventsConsumed.labels({ consumer, result: "storage-unavailable-retried" });
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
      let release: (() => void) | undefined;
      try {
        const decoded = batch.map(decode);
        const keys = decoded.flatMap((p) => p.handler.serializeBy?.(p.message) ?? []);
        // Deliveries contending on one key would load the same version and conflict: one by one.
        if (new Set(keys).size < keys.length) throw new WriteConflict("contended batch");
        // The batch's keys are taken too: a batch of another partition, or a delivery being
        // retried alone, that touches the same keys waits instead of conflicting — a conflict
        // aborts the whole group commit it shares with other bodies.
        if (keys.length > 0) release = await locks.acquire(keys);
        const prepared = decoded.some((p) => p.handler.load) ? await Promise.all(decoded.map(load)) : decoded;
        const outcomes = await storage.transactInternal((tx) => prepared.map((p) => apply(tx, p)));
        release?.();
        record(outcomes, batch);
        return batch.map(() => ({ ok: true }));
      } catch (batchError) {
        release?.();
        // One delivery alone: only a conflict (load again) or a duplicate is worth another try.
        if (batch.length === 1 && !(batchError instanceof DuplicateDelivery) && !(batchError instanceof WriteConflict) && !isUnreachable(batchError)) return [fail(batchError)];
      }
      // One transaction per delivery: aggregates side by side (their transactions still share
      // commits), each aggregate's deliveries one after the other, stopping at its first failure.
      const byAggregate = new Map<string, number[]>();
      batch.forEach((d, i) => {
        const list = byAggregate.get(d.envelope.aggregateId);
        if (list) list.push(i);
        else byAggregate.set(d.envelope.aggregateId, [i]);
      });
      const results: Array<DeliveryResult | undefined> = new Array(batch.length);
      await Promise.all(
        [...byAggregate.values()].map(async (indexes) => {
          for (const i of indexes) {
            results[i] = await one(batch[i]!);
            if (!results[i]!.ok) return;
          }
        }),
      );
      // Up to the first failure in batch order; the bus redelivers from there (what committed
      // after it is then a duplicate for the inbox), so order per aggregate holds.
      const firstFailure = results.findIndex((r) => !r?.ok);
      return firstFailure < 0 ? (results as DeliveryResult[]) : (results.slice(0, firstFailure + 1) as DeliveryResult[]);
    },
  };

  /** One delivery in its own transaction; a write conflict loads and runs it again, a few times. */
  async function one(d: Delivery): Promise<DeliveryResult> {
    let unreachableSince: number | undefined;
    for (let attempt = 1; ; attempt++) {
      let release: (() => void) | undefined;
      try {
        const decoded = decode(d);
        const keys = decoded.handler.serializeBy?.(decoded.message);
        if (keys && keys.length > 0) release = await locks.acquire(keys);
        const p = await load(decoded);
        const outcome = await storage.transactInternal((tx) => apply(tx, p));
        release?.();
        record([outcome], [d]);
        return { ok: true };
      } catch (err) {
        release?.();
        if (err instanceof DuplicateDelivery) {
          record(["duplicate"], [d]);
          return { ok: true };
        }
        if (err instanceof WriteConflict && attempt < MAX_CONFLICT_ATTEMPTS) {
          conflicts.inc();
          // Jittered, growing pause: writers racing for one hot row (a popular product) spread out.
          await delay(Math.random() * Math.min(50, 2 ** attempt));
          continue;
        }
        // The module's database is briefly away (restart, failover, connections exhausted): that
        // is not the event's fault, so it must not spend the event's deliveries and dead-letter
        // it. Wait here, with backoff, up to STORAGE_OUTAGE_MS; past that the bus's own retries
        // take over.
        if (isUnreachable(err)) {
          unreachableSince ??= Date.now();
          if (Date.now() - unreachableSince < STORAGE_OUTAGE_MS) {
            unavailable.inc();
            await delay(Math.min(2_000, 50 * 2 ** Math.min(attempt, 6)));
            continue;
          }
        }
        return fail(err);
      }
    }
  }

  function fail(err: unknown): DeliveryResult {
    counted.failed.inc();
    logger.debug("event handler failed", { consumer, err });
    return failedDelivery(err);
  }
}
