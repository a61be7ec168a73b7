import { Counter, Histogram } from "prom-client";
import { createConsumer } from "../bus/consumer.ts";
import type { Bus, BusPosition, BusSubscription, RetainedLog, SubscribeOptions } from "../bus/types.ts";
import type { ModuleContext, ModuleInstance, ModuleManifest, ModuleMetrics, SubscriptionSpec } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Tracer } from "../observability/trace.ts";
import type { PlatformStorage } from "../storage/module-storage.ts";
import type { RebuildRecord } from "./record.ts";
import type { RebuildTarget } from "./target.ts";

/** How far a rebuild is. `passed` of `total` positions of the bus read; `applied` events handled, `skipped` given up on. */
export interface ReplayProgress {
  readonly phase: "rebuild" | "catch-up" | "swap" | "done";
  readonly passed: number;
  readonly total: number;
  readonly applied: number;
  readonly skipped: number;
}

/** Options of one rebuild. */
export interface ReplayOptions {
  /**
   * Point in time (ms since the epoch): apply only the events that occurred at or before it, into
   * a copy kept for inspection; the live read model is not touched.
   */
  readonly until?: number;
  /** Told the progress as it goes (a few times a second at most) and at each phase. */
  readonly onProgress?: (p: ReplayProgress) => void;
  /** Aborts the rebuild (until the swap starts); the live read model stays as it was. */
  readonly signal?: AbortSignal;
}

/** What a finished rebuild did. */
export interface ReplayResult {
  readonly consumer: string;
  /** `swapped`: the live read model is now the rebuilt one; `point-in-time`: a copy was kept at `location`. */
  readonly mode: "swapped" | "point-in-time";
  readonly location: string;
  readonly record: RebuildRecord;
}

/** A read model as the process hosting it runs it: what a rebuild needs. */
export interface ReadModelHost {
  /** `<module>.<subscription>`, the read model's name. */
  readonly consumer: string;
  readonly manifest: ModuleManifest<any>;
  /** The live subscription's spec (with `readModel`). */
  readonly spec: SubscriptionSpec;
  /** The live consumer: paused for the last events and the swap. */
  readonly subscription: BusSubscription;
  /** The live storage, whose read-model tables the swap replaces. */
  readonly storage: PlatformStorage;
  /** The live module's context; the rebuild starts a second instance with the copy's storage. */
  readonly context: ModuleContext<unknown>;
}

/** What a rebuild needs of the platform. */
export interface RebuildDeps {
  readonly bus: Bus;
  readonly openTarget: (host: ReadModelHost, until: number | undefined) => Promise<RebuildTarget>;
  readonly tracer: Tracer;
  readonly logger: Logger;
  readonly batchSize: number;
  /** Attempts at an event before the rebuild skips it, as the live consumer dead-letters it. */
  readonly maxDeliver: number;
}

/**
 * While the live consumer is running, the rebuild catches up to its moving position in rounds;
 * once fewer events than this are left, the consumer is paused for the rest and the swap.
 */
const PAUSE_BELOW = 100;
const MAX_ROUNDS = 20;
const PROGRESS_EVERY_MS = 250;

/**
 * Rebuilds a read model from the bus's retained events into a fresh copy, with a second instance
 * of its module — same handlers, same statements, its own storage and inbox — while the live one
 * keeps serving and consuming:
 *
 * 1. rebuild: every retained event of the subscription's types up to the live consumer's
 *    position, then again up to where it has moved meanwhile, until little is left;
 * 2. catch-up: pause the live consumer (after its batch in flight) and apply the rest up to its
 *    checkpoint — copy and live read model have now seen exactly the same events;
 * 3. swap: replace the live tables with the copy's in one transaction, record the rebuild, and
 *    resume the live consumer, which goes on from its checkpoint.
 *
 * With `until`, only events that occurred at or before that moment are applied, up to the bus's
 * head, into a copy that is kept; nothing is paused or swapped.
 */
export async function rebuildReadModel(host: ReadModelHost, deps: RebuildDeps, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const started = Date.now();
  const { consumer } = host;
  const log = deps.bus.retained;
  const sub = host.subscription;
  if (!log || !sub.pause || !sub.resume || !sub.position) throw new Error(`the ${deps.bus.kind} bus cannot replay events`);
  const types = host.spec.handlers.map((h) => h.event.typeName);
  const gaps = await log.gaps(types);
  if (gaps.length > 0) throw new EventsNotRetained(`${consumer}: the bus no longer holds every event this read model is built from; a rebuild would lose them:\n  ${gaps.join("\n  ")}`);

  const target = await deps.openTarget(host, opts.until);
  const logger = deps.logger.child({ consumer, copy: target.location });
  const progress = new Progress(opts.onProgress);
  let instance: ModuleInstance | undefined;
  try {
    instance = await host.manifest.start({ ...host.context, storage: target.storage, logger, metrics: scratchModuleMetrics() });
    const spec = instance.subscriptions?.find((s) => s.name === host.spec.name);
    if (!spec) throw new Error(`${consumer}: a second instance of module ${host.manifest.name} has no subscription ${host.spec.name}`);
    const copy = createConsumer({ module: host.manifest.name, spec, storage: target.storage, tracer: deps.tracer, logger, metrics: scratchConsumerMetrics(), traced: false });
    const apply = async (after: BusPosition, upTo: BusPosition) => {
      progress.total += await log.count(types, after, upTo);
      await feed(log, types, after, upTo, copy, { ...deps, logger, until: opts.until, progress, signal: opts.signal });
    };
    logger.info("read model rebuild started", { mode: opts.until === undefined ? "swap" : "point-in-time", ...(opts.until !== undefined && { until: new Date(opts.until).toISOString() }) });

    if (opts.until !== undefined) {
      progress.phase("rebuild");
      const head = await log.head(types);
      await apply({}, head);
      await stop(instance);
      instance = undefined;
      const record = { consumer, rebuiltAt: Date.now(), untilAt: opts.until, events: progress.applied, skipped: progress.skipped, checkpoint: head, durationMs: Date.now() - started };
      await target.keep(record);
      progress.phase("done");
      logger.info("point-in-time copy built", { ...record });
      return { consumer, mode: "point-in-time", location: target.location, record };
    }

    progress.phase("rebuild");
    let at: BusPosition = {};
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const next = await sub.position();
      if (round > 0 && (await log.count(types, at, next)) < PAUSE_BELOW) break;
      await apply(at, next);
      at = next;
    }
    progress.phase("catch-up");
    try {
      const checkpoint = await sub.pause();
      await apply(at, checkpoint);
      await stop(instance);
      instance = undefined;
      progress.phase("swap");
      const record = { consumer, rebuiltAt: Date.now(), untilAt: null, events: progress.applied, skipped: progress.skipped, checkpoint, durationMs: Date.now() - started };
      await target.swapInto(host.storage, host.spec.readModel!.tables, record);
      progress.phase("done");
      logger.info("read model rebuilt and swapped in", { ...record });
      return { consumer, mode: "swapped", location: target.location, record };
    } finally {
      sub.resume();
    }
  } catch (err) {
    await stop(instance).catch(() => {});
    await target.discard().catch(() => {});
    logger.warn("read model rebuild failed; the live read model is unchanged", { err });
    throw err;
  }
}

/** The bus no longer holds every event a read model was built from. */
export class EventsNotRetained extends Error {
  override readonly name = "EventsNotRetained";
}

async function stop(instance: ModuleInstance | undefined): Promise<void> {
  await instance?.stop?.();
}

/**
 * Applies the retained events of (after, upTo] to the copy, batch by batch (group-committed). An
 * event whose handler fails is tried `maxDeliver` times in all, then skipped and logged — the
 * live consumer dead-letters such an event too.
 */
async function feed(
  log: RetainedLog,
  types: readonly string[],
  after: BusPosition,
  upTo: BusPosition,
  copy: SubscribeOptions,
  o: { batchSize: number; maxDeliver: number; logger: Logger; until: number | undefined; progress: Progress; signal: AbortSignal | undefined },
): Promise<void> {
  for await (const batch of log.read(types, after, upTo, { batchSize: o.batchSize, signal: o.signal })) {
    o.signal?.throwIfAborted();
    let rest = o.until === undefined ? batch.deliveries : batch.deliveries.filter((d) => d.envelope.occurredAt <= o.until!);
    while (rest.length > 0) {
      const results = await copy.handle(rest);
      let ok = 0;
      while (ok < rest.length && results[ok]?.ok) ok++;
      o.progress.applied += ok;
      if (ok === rest.length) break;
      const failed = rest[ok]!;
      let last = results[ok];
      for (let attempt = 2; attempt <= o.maxDeliver && !last?.ok; attempt++) [last] = await copy.handle([{ ...failed, attempt }]);
      if (last?.ok) o.progress.applied++;
      else {
        o.progress.skipped++;
        o.logger.warn("rebuild skipped an event its handler keeps failing on", { eventId: failed.envelope.id, type: failed.envelope.type, seq: failed.seq, err: last && !last.ok ? last.error : undefined });
      }
      rest = rest.slice(ok + 1);
    }
    o.progress.passed += batch.passed;
    o.progress.report();
  }
}

/** Counts and reports progress, at most every PROGRESS_EVERY_MS within a phase. */
class Progress {
  passed = 0;
  total = 0;
  applied = 0;
  skipped = 0;
  #phase: ReplayProgress["phase"] = "rebuild";
  #last = 0;

  constructor(private readonly listener: ((p: ReplayProgress) => void) | undefined) {}

  phase(p: ReplayProgress["phase"]): void {
    this.#phase = p;
    this.report(true);
  }

  report(force = false): void {
    const now = Date.now();
    if (!this.listener || (!force && now - this.#last < PROGRESS_EVERY_MS)) return;
    this.#last = now;
    this.listener({ phase: this.#phase, passed: this.passed, total: this.total, applied: this.applied, skipped: this.skipped });
  }
}

/** Metrics of the second instance: counted nowhere, so the live figures stay the live consumer's. */
function scratchModuleMetrics(): ModuleMetrics {
  return { gauge: () => {}, counter: (name, help, labelNames) => new Counter({ name, help, labelNames, registers: [] }) };
}

function scratchConsumerMetrics() {
  return {
    eventsConsumed: new Counter({ name: "rebuild_events_consumed", help: "-", labelNames: ["consumer", "result"], registers: [] }),
    consumerLagSeconds: new Histogram({ name: "rebuild_consumer_lag", help: "-", labelNames: ["consumer"], registers: [] }),
  };
}
