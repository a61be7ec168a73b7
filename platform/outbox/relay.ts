import type { Bus, EventEnvelope } from "../bus/types.ts";
import { backoffMs, Doorbell } from "../doorbell.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { OutboxRow, PlatformStorage } from "../storage/module-storage.ts";

/** What the platform drives of a module's relay, whichever way it finds committed rows (`outbox.relay`). */
export interface Relay {
  start(): void;
  /** Resolves once everything committed so far has been published. */
  drained(): Promise<void>;
  /** Publishes what is left (bounded by `timeoutMs`), then stops. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface RelayOptions {
  batchSize: number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * Publishes one module's committed outbox rows to the bus, in commit order, then marks them.
 *
 * Woken by the storage right after every commit that wrote events — no polling delay. A crash
 * between publish and mark republishes the same event ids, which the bus deduplicates (and the
 * consumers' inboxes would absorb anyway): at-least-once, never lost, never invented.
 */
export class OutboxRelay implements Relay {
  #running = false;
  /** Rung by every commit with events (and by stop, drain); cuts the relay's sleeps short. */
  readonly #bell = new Doorbell();
  #loop: Promise<void> | undefined;
  #unlisten: (() => void) | undefined;
  #idle: Array<() => void> = [];

  constructor(
    private readonly storage: PlatformStorage,
    private readonly bus: Bus,
    private readonly opts: RelayOptions,
  ) {}

  start(): void {
    this.#running = true;
    this.#unlisten = this.storage.onOutboxCommit(() => this.#bell.ring());
    this.#loop = this.#run();
  }

  /** Resolves once everything committed so far has been published. */
  async drained(): Promise<void> {
    if ((await this.storage.outboxStats()).backlog === 0) return;
    return new Promise((r) => {
      this.#idle.push(r);
      this.#bell.ring();
    });
  }

  /** Publishes what is left (bounded by `timeoutMs`), then stops. */
  async stop(timeoutMs = 5000): Promise<void> {
    // A standby (another instance holds the module's relay lease) has nothing to flush.
    if (this.storage.relayLeader) {
      const drained = await Promise.race([this.drained().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), timeoutMs).unref?.())]);
      const { backlog } = await this.storage.outboxStats().catch(() => ({ backlog: -1 }));
      if (drained) this.opts.logger.info("outbox relay flushed", { module: this.storage.module });
      else this.opts.logger.warn("outbox relay stopped before the outbox was drained; the rest is published by the next start", { module: this.storage.module, backlog, timeoutMs });
    }
    this.#running = false;
    this.storage.stopRelaying();
    this.#unlisten?.();
    this.#bell.ring();
    await this.#loop;
  }


  async #run(): Promise<void> {
    const { logger, metrics, batchSize } = this.opts;
    const module = this.storage.module;
    const lag = metrics.relayLag.labels({ module });
    const published = metrics.eventsPublished.labels({ module });
    let failures = 0;
    type Rows = Awaited<ReturnType<PlatformStorage["readUnpublished"]>>;
    /** What the last mark read after the rows it marked; undefined: read first. */
    let next: Rows | undefined;
    while (this.#running) {
      let rows: Rows;
      // The mark's read is current unless a commit with events woke the relay since it was sent.
      if (next && (next.length > 0 || !this.#bell.rung)) rows = next;
      else {
        this.#bell.rung = false;
        try {
          rows = await this.storage.readUnpublished(batchSize);
        } catch (err) {
          if (!this.#running) break;
          failures++;
          const delay = backoffMs(failures);
          logger.warn("outbox relay could not read the outbox; retrying", { module, err, retryInMs: delay });
          await this.#bell.sleep(delay);
          continue;
        }
      }
      next = undefined;
      if (rows.length === 0) {
        for (const r of this.#idle.splice(0)) r();
        // A slow safety tick covers a wake-up that could never come (e.g. rows written by a
        // previous process before a crash are picked up on the first pass anyway).
        if (!this.#bell.rung) await this.#bell.sleep(1000);
        continue;
      }
      const envelopes = rows.map((r) => outboxEnvelope(module, r));
      try {
        await this.bus.publish(envelopes);
        const now = Date.now();
        for (const r of rows) lag.observe((now - r.created_at) / 1000);
        published.inc(rows.length);
        // Marks what was published and reads what came meanwhile, in one round trip — unless
        // nothing can have come: a read short of the batch saw every row committed before it,
        // and no commit with events rang since (the bell was reset right before that read). The
        // bus has them: if the mark fails, the next pass reads and publishes them again, and
        // their event ids make that a duplicate the bus and the inboxes drop.
        const readAfter = rows.length < batchSize && !this.#bell.rung ? 0 : batchSize;
        this.#bell.rung = false;
        next = await this.storage.markPublished(rows[rows.length - 1]!.seq, now, readAfter);
        failures = 0;
      } catch (err) {
        failures++;
        const delay = backoffMs(failures);
        logger.warn("outbox relay could not publish; retrying", { module, err, retryInMs: delay, backlog: rows.length });
        await this.#bell.sleep(delay);
      }
    }
  }
}

/** The bus envelope of an outbox row of `module` (either relay). */
export function outboxEnvelope(module: string, r: OutboxRow): EventEnvelope {
  return {
    id: r.event_id,
    type: r.type,
    source: module,
    aggregateId: r.aggregate_id,
    payload: r.payload,
    headers: JSON.parse(r.headers) as Record<string, string>,
    occurredAt: r.created_at,
  };
}
