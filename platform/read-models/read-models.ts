import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import type { Bus, BusPosition } from "../bus/types.ts";
import type { PlatformConfig } from "../config/schema.ts";
import type { Logger } from "../observability/logger.ts";
import type { Tracer } from "../observability/trace.ts";
import { domainError } from "../rpc/errors.ts";
import { pgTargets } from "../storage/open.ts";
import { readRecord, type RebuildRecord } from "./record.ts";
import { EventsNotRetained, rebuildReadModel, type ReadModelHost, type ReplayOptions, type ReplayResult } from "./rebuild.ts";
import { openPgTarget } from "./target-postgres.ts";
import { openSqliteTarget } from "./target-sqlite.ts";
import type { RebuildTarget } from "./target.ts";

/**
 * Events a rebuild reads and applies per transaction (at least `bus.batchSize`): nothing waits on
 * a rebuild's commits, so bigger batches only save per-commit work.
 */
const REPLAY_BATCH = 2_000;

/** A read model as `GET /admin/v1/read-models` shows it. */
export interface ReadModelInfo {
  /** `<module>.<subscription>`: the name `replay` takes. */
  readonly consumer: string;
  readonly module: string;
  readonly tables: readonly string[];
  /** The live consumer's position on the bus: the read model's checkpoint (absent while the bus cannot say). */
  readonly checkpoint?: BusPosition;
  /** The last rebuild swapped in, as recorded in the read model's storage. */
  readonly lastRebuild?: RebuildRecord;
  /** A rebuild is running now. */
  readonly rebuilding: boolean;
}

const DOMAIN = "selaras.read-models";

/**
 * The read models this process hosts — subscriptions with `readModel` — and their rebuilds: at
 * most one at a time per read model, aborted when the platform stops.
 *
 * @example const result = await platform.readModels.replay("order-history.projection", { onProgress: console.log });
 */
export class ReadModels {
  readonly #hosts = new Map<string, ReadModelHost>();
  readonly #running = new Map<string, { abort: AbortController; done: Promise<unknown> }>();
  #stopped = false;

  constructor(
    private readonly deps: {
      readonly bus: Bus;
      readonly config: PlatformConfig;
      readonly tracer: Tracer;
      readonly logger: Logger;
    },
  ) {}

  /** Registers a live read model (the platform does, for each subscription with `readModel`). */
  add(host: ReadModelHost): void {
    if (!host.spec.readModel || host.spec.readModel.tables.length === 0) throw new Error(`${host.consumer}: a read model names its tables`);
    this.#hosts.set(host.consumer, host);
  }

  /** The read models' names (`<module>.<subscription>`). */
  names(): string[] {
    return [...this.#hosts.keys()];
  }

  /** Read models of this process's module threads: their admin is forwarded there, but an unknown name's error lists them too. */
  #onThreads: readonly string[] = [];
  hostedOnThreads(names: readonly string[]): void {
    this.#onThreads = names;
  }

  async list(): Promise<ReadModelInfo[]> {
    return Promise.all(
      [...this.#hosts.values()].map(async (h) => ({
        consumer: h.consumer,
        module: h.manifest.name,
        tables: h.spec.readModel!.tables,
        checkpoint: await h.subscription.position?.().catch(() => undefined),
        lastRebuild: await readRecord(h.storage, h.consumer),
        rebuilding: this.#running.has(h.consumer),
      })),
    );
  }

  /** Throws the error `replay` would throw at once: an unknown read model, or one already rebuilding. */
  check(consumer: string): void {
    if (this.#stopped) throw domainError(Code.Unavailable, "shutting-down", "the process is shutting down", DOMAIN);
    if (!this.#hosts.has(consumer)) {
      const known = [...this.names(), ...this.#onThreads];
      throw domainError(Code.NotFound, "read-model-not-found", `no read model ${consumer} in this process${known.length > 0 ? ` (it hosts ${known.join(", ")})` : " (it hosts none)"}`, DOMAIN);
    }
    if (this.#running.has(consumer)) throw domainError(Code.Aborted, "rebuild-running", `${consumer} is being rebuilt already`, DOMAIN);
  }

  /**
   * Rebuilds a read model (see `rebuildReadModel`): into a shadow copy swapped in at the end, or —
   * with `until` — into a point-in-time copy kept for inspection.
   */
  async replay(consumer: string, opts: ReplayOptions = {}): Promise<ReplayResult> {
    this.check(consumer);
    const host = this.#hosts.get(consumer)!;
    const abort = new AbortController();
    opts.signal?.addEventListener("abort", () => abort.abort(opts.signal!.reason), { once: true });
    const { bus, config, tracer, logger } = this.deps;
    const done = rebuildReadModel(
      host,
      { bus, tracer, logger: logger.child({ component: "read-models" }), batchSize: Math.max(config.bus.batchSize, REPLAY_BATCH), maxDeliver: config.bus.maxDeliver, openTarget: (h, until) => this.#openTarget(h, until) },
      { ...opts, signal: abort.signal },
    ).catch((err: unknown) => {
      if (err instanceof EventsNotRetained) throw domainError(Code.FailedPrecondition, "events-not-retained", err.message, DOMAIN);
      throw err;
    });
    this.#running.set(consumer, { abort, done });
    try {
      return await done;
    } finally {
      this.#running.delete(consumer);
    }
  }

  /** Aborts running rebuilds (their live read models stay as they were) and waits for them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const running = [...this.#running.values()];
    for (const r of running) r.abort.abort(new Error("the process is shutting down"));
    await Promise.allSettled(running.map((r) => r.done));
  }

  /**
   * The copy: `<dataDir>/<module>.rebuild.db` or schema `<schema>_rebuild`; a point in time gets
   * its own, named after it: `<module>.pit-20250131T120000.000Z.db` or `<schema>_pit_<epoch ms>`.
   */
  #openTarget(host: ReadModelHost, until: number | undefined): Promise<RebuildTarget> {
    const { config, tracer } = this.deps;
    const module = host.manifest.name;
    const stamp = until === undefined ? undefined : new Date(until).toISOString().replace(/[-:]/g, "");
    if (config.storage.kind === "postgres") {
      const [live] = pgTargets(config, [module]);
      const pg = config.storage.postgres;
      // Epoch milliseconds: a schema name must stay short (see openPgTarget).
      const schema = until === undefined ? `${live!.schema}_rebuild` : `${live!.schema}_pit_${until}`;
      return openPgTarget({ live: live!, schema, provision: pg.provision, migrations: host.manifest.migrations.postgres ?? [], poolSize: pg.poolSize, maxBatch: pg.maxBatch, tracer });
    }
    const file = join(config.dataDir, stamp === undefined ? `${module}.rebuild.db` : `${module}.pit-${stamp}.db`);
    return openSqliteTarget({ module, file, migrations: host.manifest.migrations.sqlite, sqlite: config.sqlite, tracer });
  }
}
