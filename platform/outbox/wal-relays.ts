import type { Bus } from "../bus/types.ts";
import { captureConnection } from "../cdc/capture.ts";
import type { PlatformConfig } from "../config/schema.ts";
import type { ModuleManifest } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { PlatformStorage } from "../storage/module-storage.ts";
import { pgTargets } from "../storage/open.ts";
import { CdcOutboxRelay, outboxSlotName } from "./cdc-relay.ts";

/**
 * The modules whose outbox is relayed from the WAL: with `outbox.relay = "cdc"` on Postgres,
 * those that declare events (`publishes`). Every slot decodes the whole database's WAL, so a
 * module that publishes nothing keeps the polling relay, idle and without a slot.
 * @example const wal = walRelayedModules(config, modules); // Set { "orders", "payments" }
 */
export function walRelayedModules(config: PlatformConfig, manifests: readonly ModuleManifest<any>[]): Set<string> {
  if (config.outbox.relay !== "cdc" || config.storage.kind !== "postgres") return new Set();
  return new Set(manifests.filter((m) => (m.publishes?.length ?? 0) > 0).map((m) => m.name));
}

/** What `setUpWalRelays` needs from the platform. */
export interface WalRelayDeps {
  readonly config: PlatformConfig;
  readonly manifests: readonly ModuleManifest<any>[];
  /** This process's module storages. */
  readonly storages: ReadonlyMap<string, PlatformStorage>;
  readonly bus: Bus;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/**
 * Sets up (not yet started) a WAL relay for each module of `walRelayedModules`, failing the start
 * when the server or the role cannot do it (`wal_level`, REPLICATION), and registers
 * `selaras_relay_slot_lag_bytes{module}`. On Postgres, warns about an outbox slot left by an
 * earlier `relay = "cdc"` for a module polled now: it keeps WAL until dropped.
 */
export async function setUpWalRelays(deps: WalRelayDeps): Promise<Map<string, CdcOutboxRelay>> {
  const { config, storages } = deps;
  const wal = walRelayedModules(config, deps.manifests);
  const relays = new Map<string, CdcOutboxRelay>();
  if (config.storage.kind !== "postgres") return relays;
  for (const [module, storage] of storages) {
    const target = pgTargets(config, [module])[0]!;
    const logger = deps.logger.child({ module, component: "relay" });
    if (!wal.has(module)) {
      const slot = outboxSlotName(target.schema);
      const [left] = await storage.queryRaw("SELECT 1 AS x FROM pg_replication_slots WHERE slot_name = ?", [slot]);
      if (left) logger.warn("an outbox relay slot exists but this module's outbox is polled: it keeps WAL until dropped (once no instance relays with outbox.relay = cdc)", { slot });
      continue;
    }
    const relay = new CdcOutboxRelay({
      module,
      schema: target.schema,
      role: target.role,
      storage,
      connection: captureConnection(config, target.admin),
      grantModuleRole: config.storage.postgres.provision,
      bus: deps.bus,
      batchSize: config.outbox.batchSize,
      heartbeatMs: config.cdc.heartbeatMs,
      logger,
      metrics: deps.metrics,
    });
    await relay.setup();
    relays.set(module, relay);
  }
  if (relays.size > 0) {
    deps.metrics.gaugeFn("selaras_relay_slot_lag_bytes", "Bytes of WAL an outbox relay slot (outbox.relay = cdc) holds beyond what was published and confirmed: alert when it only grows", ["module"], async (set) => {
      for (const r of relays.values()) set({ module: r.module }, await r.slotLag());
    });
  }
  return relays;
}
