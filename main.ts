/**
 * The composition root: config -> platform -> modules -> listen.
 *
 *   bun run main.ts                       every module, one process, embedded storage under ./data
 *   bun run main.ts --config FILE --process NAME   one process of the topology FILE describes
 *   bun run main.ts --help                every flag and config key
 *   bun run main.ts dead-letters [list|redrive …]   the dead-letter queue (see platform/cli/dead-letters.ts)
 *   bun run main.ts migrate               provision and migrate this process's storage, then exit
 *   bun run main.ts provision-sql         the SQL an operator runs to provision Postgres by hand
 *   bun run main.ts check-invariants [URL]   the saga's invariants, checked against a running system
 *   bun run main.ts replay READ-MODEL [--until TIME]   rebuild a read model in the process hosting it
 */
import { ConfigError, configHelp, loadConfig } from "./platform/config/index.ts";
import { DEAD_LETTERS_USAGE, deadLettersCommand } from "./platform/cli/dead-letters.ts";
import { migrateCommand, provisionSqlCommand, STORAGE_USAGE } from "./platform/cli/storage.ts";
import { REPLAY_USAGE, replayCommand } from "./platform/cli/replay.ts";
import { CHECK_INVARIANTS_USAGE, checkInvariantsCommand } from "./ops/check-invariants-command.ts";
import { createLogger } from "./platform/observability/logger.ts";
import { capturesOf } from "./platform/cdc/index.ts";
import { createPlatform } from "./platform/platform.ts";
import { planProcess, TopologyError } from "./platform/topology/index.ts";
import { allModules } from "./modules.ts";
import type { ModuleManifest } from "./platform/module.ts";
import type { PlatformConfig } from "./platform/config/schema.ts";
import { availableParallelism } from "node:os";

/**
 * Runs the binary with `modules` (default: every module of modules.ts); resolves with the exit
 * code. The bench starts it with a subset (bench/one-hop-server.ts).
 */
export async function main(modules: readonly ModuleManifest<any>[] = allModules): Promise<number> {
  let loaded;
  try {
    loaded = loadConfig({ argv: process.argv.slice(2), env: process.env, cwd: process.cwd() });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n\nRun with --help for every flag and key.\n`);
      return 2;
    }
    throw err;
  }
  if (loaded.help) {
    process.stdout.write(configHelp() + "\n");
    return 0;
  }
  // Runs against the whole system, whichever process it names: before choosing one.
  if (loaded.command[0] === "check-invariants") {
    const io = { out: (l: string) => process.stdout.write(l + "\n"), err: (l: string) => process.stderr.write(l + "\n") };
    try {
      return await checkInvariantsCommand(loaded.command.slice(1), loaded.config, io);
    } catch (err) {
      io.err(`check-invariants failed: ${(err as Error).message}`);
      return 1;
    }
  }
  // Runs in the process hosting the read model, wherever that is: before choosing one.
  if (loaded.command[0] === "replay") {
    return replayCommand(loaded.command.slice(1), loaded.config, { out: (l) => process.stdout.write(l + "\n"), err: (l) => process.stderr.write(l + "\n") });
  }
  let plan;
  try {
    plan = planProcess(loaded.config, modules);
  } catch (err) {
    if (err instanceof TopologyError) {
      process.stderr.write(`${err.message}\n\nSee README.md, "Topology", for the format.\n`);
      return 2;
    }
    throw err;
  }
  const [command, ...args] = loaded.command;
  if (command !== undefined) {
    const logger = createLogger({ level: "warn", base: { service: loaded.config.serviceName } });
    const io = { out: (l: string) => process.stdout.write(l + "\n"), err: (l: string) => process.stderr.write(l + "\n") };
    const commands: Record<string, () => Promise<number> | number> = {
      "dead-letters": () => deadLettersCommand(args, plan.config, logger, io),
      migrate: () => migrateCommand(plan.config, plan.modules, logger, io),
      "provision-sql": () => provisionSqlCommand(plan.config, plan.modules, io),
    };
    const run = commands[command];
    if (!run || (command !== "dead-letters" && args.length > 0)) {
      io.err(`unknown command: ${loaded.command.join(" ")}\n\n${DEAD_LETTERS_USAGE}\n${STORAGE_USAGE}\n${CHECK_INVARIANTS_USAGE}\n${REPLAY_USAGE}`);
      return 2;
    }
    try {
      return await run();
    } catch (err) {
      io.err(`${command} failed: ${(err as Error).message}`);
      return 1;
    }
  }
  let platform;
  try {
    platform = await createPlatform({
      config: withDefaultThreads(plan.config, plan.modules),
      modules: plan.modules,
      remotes: plan.remotes,
      captures: capturesOf(modules),
      threadEntry: new URL("./module-thread.ts", import.meta.url),
      // Half the modules gone: exit, so whatever supervises the process restarts all of it.
      onThreadLost: () => process.exit(1),
    });
  } catch (err) {
    process.stderr.write(`selaras failed to start: ${(err as Error).message}\n`);
    return 1;
  }
  await platform.listen();
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      platform.logger.info("shutting down", { signal });
      resolve();
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
  const { timeoutMs } = plan.config.shutdown;
  const deadline = setTimeout(() => {
    platform.logger.error("graceful shutdown did not finish in time; exiting", { timeoutMs });
    process.exit(1);
  }, timeoutMs);
  deadline.unref();
  await platform.stop();
  clearTimeout(deadline);
  return 0;
}

/**
 * The modules of the reference system for the default module thread, the first of these groups
 * this process hosts any of. The saga's consumer side first: payments and inventory (orders asks,
 * they answer) and notifications; order-history and analytics then stay on the main thread with
 * orders, whose events they read, as on the thread every one of those deliveries would cross the
 * port. A process hosting none of the first group (the one-hop bench's four modules) puts its
 * read side there instead. Measured alternately on 2 cores (docs/benchmarks.md, runs R): ~15 %
 * more confirmed orders/s than all five on the thread; one hop +5–20 % with order-history there.
 */
const THREADED = [
  ["payments", "inventory", "notifications"],
  ["analytics", "order-history"],
];

/**
 * `threads.workers` when the configuration leaves it unset: one embedded process on 2 or more
 * cores runs a group of `THREADED` on a thread of its own (ADR 0017), so the binary uses the
 * second core. A topology's processes, the NATS bus and one core: none.
 */
export function withDefaultThreads(config: PlatformConfig, modules: readonly ModuleManifest<any>[], cores = availableParallelism()): PlatformConfig {
  if (config.threads.workers !== undefined) return config;
  const group = THREADED.map((names) => names.filter((name) => modules.some((m) => m.name === name))).find((g) => g.length > 0) ?? [];
  const use = config.process === undefined && config.bus.kind === "embedded" && cores >= 2 && group.length > 0;
  return { ...config, threads: { workers: use ? [group] : [] } };
}

if (import.meta.main) process.exitCode = await main();
