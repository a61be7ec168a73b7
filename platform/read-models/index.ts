/**
 * Read models with replay: rebuilding a read model from the bus's retained events into a shadow
 * copy and swapping it in without downtime, or into a point-in-time copy (docs/adr/0012).
 * @example const result = await platform.readModels.replay("order-history.projection", { until: Date.parse("2025-01-01T12:00:00Z") });
 */
export { adminGuard, mountReadModelAdmin, type ConnectionInfo } from "./http.ts";
export { ReadModels, type ReadModelInfo } from "./read-models.ts";
export { rebuildReadModel, type ReadModelHost, type ReplayOptions, type ReplayProgress, type ReplayResult } from "./rebuild.ts";
export type { RebuildRecord } from "./record.ts";
