import type { PlatformConfig } from "../config/schema.ts";
import type { Logger } from "../observability/logger.ts";
import { openEmbeddedBus } from "./embedded.ts";
import { openNatsBus } from "./nats/index.ts";
import type { Bus } from "./types.ts";

/** A bus, plus pruning when the platform must prune it (the embedded log; JetStream expires by age). */
export type OpenedBus = Bus & { prune?(before: number): Promise<number> };

/**
 * Opens the bus the configuration names (`bus.kind`): the embedded log under `dataDir`, or NATS
 * JetStream. Used by the platform and by operator commands (dead letters).
 * @example const bus = await openBus(config, logger); console.log(await bus.deadLetters());
 */
export async function openBus(config: PlatformConfig, logger: Logger): Promise<OpenedBus> {
  const { bus } = config;
  if (bus.kind === "nats") {
    return openNatsBus({ ...bus.nats, maxDeliver: bus.maxDeliver, backoffMs: bus.backoffMs, retentionHours: bus.retentionHours, batchSize: bus.batchSize, name: config.serviceName, logger });
  }
  return openEmbeddedBus({ dataDir: config.dataDir, sqlite: config.sqlite, maxDeliver: bus.maxDeliver, backoffMs: bus.backoffMs, batchSize: bus.batchSize, logger });
}
