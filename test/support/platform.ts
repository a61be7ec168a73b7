import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PlatformConfigSchema, type PlatformConfig } from "../../platform/config/schema.ts";
import type { ModuleManifest } from "../../platform/module.ts";
import { createPlatform, type Platform } from "../../platform/platform.ts";
import { deleteStreams, randomPrefix, SHARED_NATS } from "./nats-server.ts";
import { dropPgPrefix, pgStorageConfig } from "./postgres.ts";

/**
 * Where `bootModules` runs modules. `SELARAS_TEST_TOPOLOGY=postgres` (the `postgres` vitest
 * project) puts their storage on the test Postgres and the bus on the shared NATS, each under a
 * fresh prefix that `dispose()` drops; unset, embedded SQLite files and the embedded bus.
 */
export const TEST_TOPOLOGY: "embedded" | "postgres" = process.env.SELARAS_TEST_TOPOLOGY === "postgres" ? "postgres" : "embedded";

/**
 * How the `postgres` topology relays outboxes: `SELARAS_TEST_RELAY=cdc` streams them from the WAL
 * (`outbox.relay = "cdc"`) instead of polling — to run the contract tests once more that way.
 */
export const TEST_RELAY: "poll" | "cdc" = process.env.SELARAS_TEST_RELAY === "cdc" ? "cdc" : "poll";

// One prefix per data dir: a test that boots twice on the same dataDir meets the same schemas and streams.
const prefixes = new Map<string, string>();

/** A fresh, empty data directory under the OS temp dir. */
export function tempDataDir(prefix = "selaras-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The platform config a test boots with: defaults, a temp data dir, quiet logs. */
export function testConfig(overrides: Partial<PlatformConfig> & { dataDir: string }): PlatformConfig {
  return PlatformConfigSchema.parse({ logLevel: "error", port: 0, ...overrides });
}

/**
 * Boots a platform hosting `modules` in a temp dir, on embedded storage or (TEST_TOPOLOGY
 * postgres) on Postgres + NATS. `dispose()` stops it and deletes the directory — and the
 * schemas, roles and streams, unless the caller passed its own `dataDir` (it boots again on it).
 * @example const t = await bootModules([catalog]); const client = t.platform.client(CatalogService);
 */
export async function bootModules(modules: readonly ModuleManifest<any>[], overrides: Partial<PlatformConfig> = {}) {
  const dataDir = overrides.dataDir ?? tempDataDir();
  // Log lines are kept, not printed: a test that provokes errors on purpose stays quiet, and can
  // assert what was logged. SELARAS_TEST_LOGS=1 prints them too.
  const logs: string[] = [];
  const print = process.env.SELARAS_TEST_LOGS === "1";
  const logSink = (line: string) => {
    logs.push(line);
    if (print) process.stderr.write(line + "\n");
  };
  let prefix: string | undefined;
  let topology: Partial<PlatformConfig> = {};
  if (TEST_TOPOLOGY === "postgres" && !overrides.storage) {
    prefix = prefixes.get(dataDir) ?? randomPrefix();
    prefixes.set(dataDir, prefix);
    const bus = { ...(overrides.bus ?? testConfig({ dataDir }).bus), kind: "nats" as const };
    topology = PlatformConfigSchema.pick({ storage: true, bus: true, outbox: true }).parse({
      storage: pgStorageConfig(prefix),
      bus: { ...bus, nats: { ...bus.nats, servers: [SHARED_NATS], prefix } },
      outbox: { ...(overrides.outbox ?? testConfig({ dataDir }).outbox), ...(TEST_RELAY === "cdc" && { relay: "cdc" }) },
    });
  }
  const dropPrefix = async () => {
    if (!prefix) return;
    prefixes.delete(dataDir);
    await dropPgPrefix(prefix);
    await deleteStreams(SHARED_NATS, prefix);
  };
  let platform: Platform;
  try {
    platform = await createPlatform({ config: testConfig({ ...overrides, ...topology, dataDir }), modules, logSink });
  } catch (err) {
    if (!overrides.dataDir) await dropPrefix();
    throw err;
  }
  return {
    platform,
    dataDir,
    logs,
    async dispose() {
      await platform.stop();
      if (overrides.dataDir) return;
      rmSync(dataDir, { recursive: true, force: true });
      await dropPrefix();
    },
  };
}

/**
 * Polls `probe` until it returns a value — anything but `undefined`, `null`, `false` or `""`
 * (so `x?.name && x` keeps waiting while the name is still empty) — or fails after `timeoutMs`
 * with the last value seen. Never a bare sleep.
 * @example const order = await waitFor(() => history.find((o) => o.id === id));
 */
export async function waitFor<T>(probe: () => T | undefined | null | false | "" | Promise<T | undefined | null | false | "">, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false && v !== "") return v as T;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? "condition"}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}
