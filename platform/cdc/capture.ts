import type { Bus } from "../bus/types.ts";
import type { PlatformConfig } from "../config/schema.ts";
import type { CaptureSpec, ModuleManifest } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import { SqliteModuleStorage, type PlatformStorage } from "../storage/module-storage.ts";
import { pgTargets, type PgModuleTarget } from "../storage/open.ts";
import { captureSlotName, PgCapture } from "./capture-postgres.ts";
import { retireSqliteCaptures, SqliteCapture } from "./capture-sqlite.ts";

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * Every table the manifests declare in `captures`, once each, checked: the owning module must be
 * one of `manifests` and the table a plain identifier. Pass the manifests of the whole binary
 * (not only this process's): the process hosting the owning module captures for consumers
 * hosted anywhere.
 * @example createPlatform({ config, modules: plan.modules, captures: capturesOf(allModules) })
 */
export function capturesOf(manifests: readonly ModuleManifest<any>[]): CaptureSpec[] {
  const known = new Set(manifests.map((m) => m.name));
  const problems: string[] = [];
  const specs = collectCaptures(manifests);
  for (const m of manifests) {
    for (const c of m.captures ?? []) {
      if (!known.has(c.module)) problems.push(`module ${m.name} captures ${c.module}.${c.table}, but there is no module ${c.module}`);
      if (!TABLE_NAME.test(c.table)) problems.push(`module ${m.name} captures ${c.module}.${JSON.stringify(c.table)}: not a plain table name`);
    }
  }
  if (problems.length > 0) throw new Error(`invalid captures:\n  - ${problems.join("\n  - ")}`);
  return specs;
}

/** The declared captures, deduplicated, without checks (a process hosting the consumer but not the owner). */
export function collectCaptures(manifests: readonly ModuleManifest<any>[]): CaptureSpec[] {
  const seen = new Map<string, CaptureSpec>();
  for (const m of manifests) for (const c of m.captures ?? []) seen.set(`${c.module}\u0000${c.table}`, { module: c.module, table: c.table });
  return [...seen.values()];
}

/** What runs the captures of one process. */
export interface Captures {
  /** Resolves once every change committed so far is on the bus (SQLite captures; a Postgres capture is not waited for). */
  drained(): Promise<void>;
  /** Stops every capture; SQLite captures publish what is left first (bounded). */
  stop(): Promise<void>;
}

/** What `startCaptures` needs from the platform. */
export interface CaptureDeps {
  readonly config: PlatformConfig;
  readonly specs: readonly CaptureSpec[];
  /** This process's module storages: only tables of these modules are captured here. */
  readonly storages: ReadonlyMap<string, PlatformStorage>;
  readonly bus: Bus;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/**
 * Captures, in this process, the declared tables of the modules it hosts: on SQLite with
 * triggers into a change table, on Postgres from a logical replication slot (see README.md).
 * Resolves once set up — SQLite: triggers and the first snapshot; Postgres: privileges checked,
 * publication — so nothing a module commits from then on is missed; the Postgres slot and its
 * snapshot (which covers what commits meanwhile) and all publishing run in the background.
 * Also retires what is no longer declared (see `retireCaptures`).
 */
export async function startCaptures(deps: CaptureDeps): Promise<Captures> {
  const { config, storages, bus, metrics } = deps;
  const byModule = new Map<string, string[]>();
  for (const s of deps.specs) if (storages.has(s.module)) byModule.set(s.module, [...(byModule.get(s.module) ?? []), s.table]);
  await retireCaptures(deps, byModule);
  if (byModule.size === 0) return { drained: async () => {}, stop: async () => {} };

  const published = metrics.counter("selaras_cdc_events_published_total", "Change events the capture put on the bus, per owning module", ["module"]);
  const sqlite: SqliteCapture[] = [];
  const pg: PgCapture[] = [];
  const stop = async () => {
    await Promise.all([...sqlite.map((c) => c.stop()), ...pg.map((c) => c.stop())]);
  };
  try {
    for (const [module, tables] of byModule) {
      const storage = storages.get(module)!;
      const logger = deps.logger.child({ component: "cdc", module });
      const onPublished = (n: number) => published.labels({ module }).inc(n);
      if (storage instanceof SqliteModuleStorage) {
        const capture = new SqliteCapture({ module, storage, tables, bus, logger, batchSize: config.outbox.batchSize, onPublished });
        capture.setup();
        sqlite.push(capture);
      } else {
        const target = pgTargets(config, [module])[0]!;
        const capture = new PgCapture({
          module,
          schema: target.schema,
          role: target.role,
          tables,
          connection: captureConnection(config, target.admin),
          grantModuleRole: config.storage.postgres.provision,
          bus,
          logger,
          heartbeatMs: config.cdc.heartbeatMs,
          onPublished,
        });
        pg.push(capture);
        await capture.setup();
      }
    }
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  for (const c of [...sqlite, ...pg]) c.start();

  if (sqlite.length > 0) {
    metrics.gaugeFn("selaras_cdc_pending_changes", "Captured row changes (SQLite change table) not yet on the bus, per owning module", ["module"], (set) => {
      for (const c of sqlite) set({ module: c.module }, c.pending());
    });
  }
  if (pg.length > 0) {
    metrics.gaugeFn("selaras_cdc_slot_lag_bytes", "Bytes of WAL a capture slot holds beyond what was published and confirmed: alert when it only grows", ["slot"], async (set) => {
      for (const c of pg) set({ slot: c.slot }, await c.lag());
    });
  }
  return {
    drained: async () => {
      await Promise.all(sqlite.map((c) => c.drained()));
    },
    stop,
  };
}

/**
 * The replication role's connection to a module's database — for captures and the WAL outbox
 * relay: `cdc.postgres.url`'s credentials if set, else the administrator's.
 * @example const connection = captureConnection(config, pgTargets(config, ["orders"])[0]!.admin);
 */
export function captureConnection(config: PlatformConfig, admin: PgModuleTarget["admin"]): PgModuleTarget["admin"] {
  const url = config.cdc.postgres.url;
  if (!url) return admin;
  const u = new URL(url);
  return { ...admin, username: decodeURIComponent(u.username), ...(u.password ? { password: decodeURIComponent(u.password) } : { password: undefined }) };
}

/**
 * What captures leave behind when no module declares them any more: SQLite triggers are dropped
 * (one process owns the file); a Postgres slot is only reported — another instance may still run
 * a binary that captures, so dropping it is an operator's step (`dropSlot`, `dropPublication`).
 */
async function retireCaptures(deps: CaptureDeps, byModule: ReadonlyMap<string, string[]>): Promise<void> {
  for (const [module, storage] of deps.storages) {
    const logger = deps.logger.child({ component: "cdc", module });
    if (storage instanceof SqliteModuleStorage) {
      retireSqliteCaptures(storage.conn, byModule.get(module) ?? [], logger);
    } else if (!byModule.has(module)) {
      const slot = captureSlotName(pgTargets(deps.config, [module])[0]!.schema);
      const [left] = await storage.queryRaw("SELECT 1 AS x FROM pg_replication_slots WHERE slot_name = ?", [slot]);
      if (left) logger.warn("a capture slot exists but no module captures this module's tables: it keeps WAL until dropped", { slot });
    }
  }
}

