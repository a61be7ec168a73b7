import { pgConnect } from "./postgres.ts";
import { sweepStalePrefixes } from "./stale.ts";

/**
 * Once per `vitest run`: drops what killed test runs left on the shared Postgres more than half an
 * hour ago. Replication slots above all — the server allows only `max_replication_slots`, and a
 * leaked one keeps WAL for ever. A server that is down is reported by the tests that need it.
 */
export async function setup(): Promise<void> {
  const admin = pgConnect(undefined, { connect_timeout: 5 });
  try {
    const dropped = await sweepStalePrefixes(admin);
    if (dropped.length > 0) console.log(`[setup] dropped ${dropped.length} stale test prefixes on Postgres: ${dropped.join(", ")}`);
  } catch (err) {
    console.warn(`[setup] could not sweep stale test objects on Postgres: ${(err as Error).message}`);
  } finally {
    await admin.end({ timeout: 1 });
  }
}
