/**
 * The system under test of an end-to-end phase, in one of three topologies:
 *  - `embedded`: one `bun main.ts` on embedded SQLite and the embedded bus (the default config);
 *  - `postgres`: config/single-postgres.json, every module in one process on Postgres + NATS;
 *  - `split`: the processes of config/split.json (each hosting some modules) on Postgres + NATS.
 * The Postgres topologies get a fresh prefix for their schemas, roles and streams, free ports and
 * temp data dirs; `stop()` (also when start-up fails, also on Ctrl-C) drops all of them.
 * Each topology runs as the full system (every module of modules.ts) or as one hop (`one-hop.ts`:
 * only the modules of order → read model, from `bench/one-hop-server.ts`; a process of the file
 * left with no module is not started).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BENCH_NATS, BENCH_POSTGRES, benchPrefix, deleteStreams, dropPgPrefix, serviceCpuSeconds, streamCount, type PidCpu } from "./infra.ts";
import type { Sample } from "./prom.ts";
import { ONE_HOP_ENTRY, ONE_HOP_MODULES, ONE_HOP_ORDERS_SAGA } from "./one-hop.ts";
import { startServer, type Server } from "./server.ts";
import { progress } from "./util.ts";

export type SystemKind = "embedded" | "postgres" | "split";

export interface System {
  readonly kind: SystemKind;
  /** Only the modules of one hop run (`one-hop.ts`): no saga finishes, nothing but the projection consumes orders. */
  readonly oneHop: boolean;
  /** The processes by name (`all` when there is one). */
  readonly processes: Readonly<Record<string, Server>>;
  /** Modules the topology hosts. */
  readonly modules: readonly string[];
  /** Schema/role/stream prefix (Postgres topologies). */
  readonly prefix?: string;
  /** Base URL of the process hosting `module`. */
  urlOf(module: string): string;
  /** Every process's /metrics, each sample labelled with `process` (summing across them works). */
  scrape(): Promise<Sample[]>;
  /** CPU seconds used so far by each process of the system. */
  cpuSeconds(): Record<string, number | undefined>;
  /** CPU seconds used so far by the Postgres and NATS servers, by pid (undefined on the embedded topology). */
  serviceCpuSeconds(): Promise<{ postgres: PidCpu; nats: PidCpu } | undefined>;
  /** The last lines of every process. */
  tail(): string;
  stop(): Promise<void>;
}

interface TopologyFile {
  storage?: Record<string, unknown>;
  bus?: { kind?: string; nats?: Record<string, unknown> };
  host?: string;
  topology: { processes: Record<string, { modules: string[]; port?: number; url?: string; dataDir?: string }> };
  modules?: Record<string, Record<string, unknown>>;
  [key: string]: unknown;
}

const CONFIG: Record<Exclude<SystemKind, "embedded">, string> = { postgres: "config/single-postgres.json", split: "config/split.json" };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function scrapeAll(processes: Record<string, Server>): Promise<Sample[]> {
  const all = await Promise.all(Object.entries(processes).map(async ([name, s]) => (await s.scrape()).map((x) => ({ ...x, labels: { ...x.labels, process: name } }))));
  return all.flat();
}

function system(kind: SystemKind, oneHop: boolean, processes: Record<string, Server>, placement: Record<string, string>, stop: () => Promise<void>, prefix?: string): System {
  return {
    kind,
    oneHop,
    processes,
    modules: Object.keys(placement),
    prefix,
    urlOf(module) {
      const p = placement[module];
      if (!p) throw new Error(`no process of the ${kind} topology hosts module ${module}`);
      return processes[p]!.url;
    },
    scrape: () => scrapeAll(processes),
    cpuSeconds: () => Object.fromEntries(Object.entries(processes).map(([n, s]) => [n, s.cpuSeconds()])),
    serviceCpuSeconds: async () => (prefix === undefined ? undefined : serviceCpuSeconds(prefix)),
    tail: () =>
      Object.entries(processes)
        .map(([n, s]) => (Object.keys(processes).length > 1 ? `--- ${n} ---\n${s.tail()}` : s.tail()))
        .join("\n"),
    stop,
  };
}

/**
 * Starts a topology and resolves once every process logged `listening`.
 * `modules`: what modules.ts registers (the embedded topology hosts all of them).
 * `profileDir`: each process writes a CPU profile into `<profileDir>/<kind>-<process>/` on exit.
 * `serverSets`: `KEY=VALUE` pairs passed as `--set` to every process (after the config file).
 * `oneHop`: only the modules of one hop (`one-hop.ts`), with orders' saga settings for that.
 */
export async function startSystem(
  kind: SystemKind,
  opts: { root: string; modules: readonly string[]; oneHop?: boolean; profileDir?: string; serverSets?: readonly string[] },
): Promise<System> {
  const oneHop = opts.oneHop ?? false;
  const entry = oneHop ? ONE_HOP_ENTRY : "main.ts";
  const modules = oneHop ? opts.modules.filter((m) => ONE_HOP_MODULES.includes(m)) : opts.modules;
  const sets = (opts.serverSets ?? []).flatMap((kv) => ["--set", kv]);
  const profName = `${kind}${oneHop ? "-one-hop" : ""}`;
  const prof = (name: string) => (opts.profileDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${join(opts.profileDir, `${profName}-${name}`)}`] : []);
  if (kind === "embedded") {
    const sagaSets = oneHop ? Object.entries(ONE_HOP_ORDERS_SAGA).flatMap(([k, v]) => ["--set", `modules.orders.saga.${k}=${v}`]) : [];
    const server = await startServer({ root: opts.root, entry, bunArgs: prof("all"), args: ["--port", "0", "--host", "127.0.0.1", ...sagaSets, ...sets] });
    return system(kind, oneHop, { all: server }, Object.fromEntries(modules.map((m) => [m, "all"])), () => server.stop());
  }

  const prefix = benchPrefix();
  const file = JSON.parse(readFileSync(join(opts.root, CONFIG[kind]), "utf8")) as TopologyFile;
  const placement: Record<string, string> = {};
  if (oneHop) {
    for (const [name, p] of Object.entries(file.topology.processes)) {
      p.modules = p.modules.filter((m) => modules.includes(m));
      if (p.modules.length === 0) delete file.topology.processes[name];
    }
    const orders = (file.modules ??= {}).orders ?? {};
    file.modules.orders = { ...orders, saga: { ...(orders.saga as object | undefined), ...ONE_HOP_ORDERS_SAGA } };
    for (const m of Object.keys(file.modules)) if (!modules.includes(m)) delete file.modules[m];
  }
  for (const [name, p] of Object.entries(file.topology.processes)) {
    const port = await freePort();
    Object.assign(p, { port, url: `http://127.0.0.1:${port}` });
    delete p.dataDir; // each process gets a fresh temp dir on the command line
    for (const m of p.modules) placement[m] = name;
  }
  file.host = "127.0.0.1";
  file.storage = { kind: "postgres", postgres: { url: BENCH_POSTGRES, schemaPrefix: prefix } };
  file.bus = { ...file.bus, kind: "nats", nats: { ...file.bus?.nats, servers: [BENCH_NATS], prefix } };
  const dir = mkdtempSync(join(tmpdir(), "selaras-bench-topology-"));
  const configFile = join(dir, "config.json");
  writeFileSync(configFile, JSON.stringify(file, null, 2));

  const processes: Record<string, Server> = {};
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      const errors: string[] = [];
      await Promise.all(Object.values(processes).map((s) => s.stop().catch((e: Error) => errors.push(e.message))));
      rmSync(dir, { recursive: true, force: true });
      await dropPgPrefix(prefix).catch((e: Error) => errors.push(`dropping schemas/roles ${prefix}_*: ${e.message}`));
      await deleteStreams(prefix).catch((e: Error) => errors.push(`deleting streams ${prefix.toUpperCase()}_*: ${e.message}`));
      if (errors.length > 0) throw new Error(`cleanup of ${kind} (${prefix}) incomplete: ${errors.join("; ")}`);
    })());
  // Ctrl-C: kill every process at once, then drop what the run created before exiting.
  const abandon = (signal: NodeJS.Signals) => {
    for (const s of Object.values(processes)) s.kill();
    progress(`${signal}: dropping ${prefix}_* schemas/roles and streams`);
    const exit = () => process.exit(signal === "SIGINT" ? 130 : 143);
    setTimeout(exit, 10_000).unref();
    void Promise.allSettled([dropPgPrefix(prefix), deleteStreams(prefix)]).then(exit);
  };
  process.once("SIGINT", abandon);
  process.once("SIGTERM", abandon);
  const stop = async () => {
    try {
      await cleanup();
    } finally {
      process.off("SIGINT", abandon);
      process.off("SIGTERM", abandon);
    }
  };

  try {
    const names = Object.keys(file.topology.processes);
    const started = await Promise.allSettled(
      names.map((name) => startServer({ root: opts.root, entry, name, bunArgs: prof(name), args: ["--config", configFile, "--process", name, ...sets], handleSignals: false, timeoutMs: 60_000 })),
    );
    started.forEach((r, i) => r.status === "fulfilled" && (processes[names[i]!] = r.value));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    // Really on NATS under this run's prefix: start-up created its streams.
    if ((await streamCount(prefix)) === 0) throw new Error(`${kind} topology: no NATS stream with prefix ${prefix.toUpperCase()}_ after start-up`);
  } catch (err) {
    await stop().catch((e: Error) => progress(e.message));
    throw err;
  }
  return system(kind, oneHop, processes, placement, stop, prefix);
}
