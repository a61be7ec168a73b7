/**
 * `bun run bench` — the benchmark. Prints a table (metric, value, bar, pass/fail) on stdout,
 * progress on stderr, and writes every figure to bench/results/latest.json.
 *
 *   bun run bench               full run (about 5 min; longer when a read model is slow to catch up)
 *   bun run bench --quick       smoke run (about 3 min)
 *   bun run bench --help        every option
 *
 * See docs/benchmarks.md for what each figure means and how it is measured.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem, platform as osPlatform, arch, release } from "node:os";
import { dirname, join, resolve } from "node:path";
import { runE2eBench } from "./e2e.ts";
import { ONE_HOP_MODULES } from "./one-hop.ts";
import { infraProblem } from "./infra.ts";
import { cdcRows, e2eRows, EMBEDDED_BARS, formatTable, replayRows, rpcRows, sagaRows, type E2eBars, type Row, type StepBars } from "./report.ts";
import { runRpcBench } from "./rpc.ts";
import type { SystemKind } from "./system.ts";
import { otherLoadCores, progress } from "./util.ts";

const ROOT = resolve(import.meta.dir, "..");

const HELP = `bun run bench [options]

  --quick              smoke run (~3 min): fewer calls, shorter phases
  --skip-rpc           skip phase 1 (co-located RPC cost)
  --skip-e2e           skip phase 2 (embedded end to end)
  --skip-postgres      skip phase 3 (one process on Postgres + NATS)
  --skip-split         skip phase 4 (the processes of config/split.json on Postgres + NATS;
                       load goes to the process hosting orders)
  --skip-one-hop       skip the one-hop run of phases 2-4 (2a, 3a, 4a: order → read model with
                       only catalog, customers, orders and order-history; the bars of issue 3)
  --skip-full          skip the full-system run of phases 2-4 (2b, 3b, 4b: every module, the
                       saga, replay and CDC steps)
  --clients=N          saturation: concurrent keep-alive clients (default 64)
  --seconds=N          saturation: seconds of load (default 20; quick 5)
  --rate=N             fixed-rate phase, embedded: orders/s (default 1000)
  --pg-rate=N          fixed-rate phase, Postgres topologies: orders/s (default 500)
  --rate-seconds=N     every fixed-rate step: seconds (default 10; quick 4)
  --skip-saga          leave out the saga figures (every order followed to CONFIRMED; phases 2-4)
  --saga-rate=N        saga 202 → CONFIRMED, embedded: orders/s (default 1000; its own fixed-rate
                       step when --rate differs)
  --saga-pg-rate=N     saga 202 → CONFIRMED, phases 3 and 4: orders/s of a fixed-rate step of its
                       own (default 200)
  --skip-replay        leave out the timed replay of the order-history read model (phases 2, 3)
  --skip-cdc           leave out change data capture commit → consumer (phase 3)
  --cdc-rate=N         change data capture: product updates/s (default 500)
  --out=FILE           JSON output (default bench/results/latest.json)
  --strict             exit 1 when a figure misses its bar
  --server-set=K=V     passed as \`--set K=V\` to every server process of phases 2-4 (repeatable),
                       to measure a configuration other than the default; shown in the output
  --profile-server     every server process writes a CPU profile (.cpuprofile and .md) to
                       .tmp/bench-profile/<topology>-<process>/

Phases 3 and 4 use SELARAS_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432/test) and
SELARAS_BENCH_NATS (default nats://127.0.0.1:4222); each run creates and then drops its own schemas,
roles, capture slots, publications and streams under a random prefix.
`;

/**
 * The end-to-end phases: topology, phase, table prefix, bars; which optional steps run in each
 * (`saga`, `replay`, `cdc`) and their bars (issues 4 and 5). Each topology runs twice: as one hop
 * (`one-hop.ts`: order → read model, nothing else consuming — what the throughput and latency bars
 * of PRODUCT.md and issue 3 are set for) and as the full system, where every order runs the saga
 * (its bars are the saga's, issue 4; its order → read-model figures are information).
 */
const E2E_PHASES: ReadonlyArray<{
  kind: SystemKind;
  oneHop: boolean;
  phase: string;
  name: string;
  prefix: string;
  bars?: E2eBars;
  skipFlag: string;
  steps: StepBars;
  saga: boolean;
  replay: boolean;
  cdc: boolean;
}> = [
  { kind: "embedded", oneHop: true, phase: "2a", name: "embedded, one hop", prefix: "Embedded one hop", bars: EMBEDDED_BARS, skipFlag: "skip-e2e", steps: {}, saga: false, replay: false, cdc: false },
  {
    kind: "embedded",
    oneHop: false,
    phase: "2b",
    name: "embedded, full system",
    prefix: "Embedded full",
    skipFlag: "skip-e2e",
    steps: { saga: { confirmedPerSec: 3000, p99Ms: 25, rate: 1000 }, replayEventsPerSec: 50_000 },
    saga: true,
    replay: true,
    cdc: false,
  },
  {
    kind: "postgres",
    oneHop: true,
    phase: "3a",
    name: "one process on Postgres + NATS, one hop",
    prefix: "PG 1 process one hop",
    bars: { ordersPerSec: 1500, readModelP99Ms: 50, relayP99Ms: 20 },
    skipFlag: "skip-postgres",
    steps: {},
    saga: false,
    replay: false,
    cdc: false,
  },
  {
    kind: "postgres",
    oneHop: false,
    phase: "3b",
    name: "one process on Postgres + NATS, full system",
    prefix: "PG 1 process full",
    skipFlag: "skip-postgres",
    steps: { cdc: { p99Ms: 100, rate: 500 } },
    saga: true,
    replay: true,
    cdc: true,
  },
  {
    kind: "split",
    oneHop: true,
    phase: "4a",
    name: "config/split.json on Postgres + NATS, one hop (core, orders, history)",
    prefix: "PG split one hop",
    bars: { ordersPerSec: 1000, readModelP99Ms: 50, relayP99Ms: 20 },
    skipFlag: "skip-split",
    steps: {},
    saga: false,
    replay: false,
    cdc: false,
  },
  {
    kind: "split",
    oneHop: false,
    phase: "4b",
    name: "config/split.json processes on Postgres + NATS, full system",
    prefix: "PG split full",
    skipFlag: "skip-split",
    steps: { saga: { confirmedPerSec: 500, p99Ms: 150, rate: 200 } },
    saga: true,
    replay: false,
    cdc: false,
  },
];
/** How long the bench lets a replay run before it gives up (and reports the rate so far). */
const REPLAY_TIMEOUT_MS = 600_000;
const PHASES = 1 + new Set(E2E_PHASES.map((p) => p.kind)).size;

function parseArgs(argv: string[]) {
  const flags = new Map<string, string | true>();
  const serverSets: string[] = [];
  for (const a of argv) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument ${a}\n\n${HELP}`);
    if (m[1] === "server-set") {
      if (!m[2] || !/^[a-zA-Z][\w.-]*=/.test(m[2])) throw new Error("--server-set needs KEY=VALUE, e.g. --server-set=bus.nats.partitions=8");
      serverSets.push(m[2]);
      continue;
    }
    flags.set(m[1]!, m[2] ?? true);
  }
  const known = [
    ...["quick", "skip-rpc", "skip-e2e", "skip-postgres", "skip-split", "skip-one-hop", "skip-full", "clients", "seconds", "rate", "pg-rate", "rate-seconds", "out", "strict", "help", "profile-server"],
    ...["skip-saga", "saga-rate", "saga-pg-rate", "skip-replay", "skip-cdc", "cdc-rate"],
  ];
  for (const k of flags.keys()) if (!known.includes(k)) throw new Error(`unknown option --${k}\n\n${HELP}`);
  const num = (k: string, d: number) => {
    const v = flags.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${k} needs a positive number`);
    return n;
  };
  const quick = flags.has("quick");
  return {
    help: flags.has("help"),
    quick,
    strict: flags.has("strict"),
    skipRpc: flags.has("skip-rpc"),
    skip: (flag: string) => flags.has(flag),
    pgRate: num("pg-rate", 500),
    saga: flags.has("skip-saga") ? undefined : { rate: num("saga-rate", 1000), pgRate: num("saga-pg-rate", 200) },
    replay: !flags.has("skip-replay"),
    cdc: flags.has("skip-cdc") ? undefined : { rate: num("cdc-rate", 500) },
    out: resolve(typeof flags.get("out") === "string" ? (flags.get("out") as string) : join(ROOT, "bench/results/latest.json")),
    rpc: quick ? { calls: 6_000, warmup: 3_000, rounds: 6 } : { calls: 20_000, warmup: 5_000, rounds: 10 },
    e2e: {
      clients: num("clients", 64),
      saturationSeconds: num("seconds", quick ? 5 : 20),
      rate: num("rate", 1000),
      rateSeconds: num("rate-seconds", quick ? 4 : 10),
      warmupSeconds: quick ? 1 : 3,
      profileDir: flags.has("profile-server") ? join(ROOT, ".tmp/bench-profile") : undefined,
      serverSets,
      products: 50,
      customers: 200,
    },
  };
}

function git(...args: string[]): string | undefined {
  try {
    return execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trimEnd(); // porcelain lines start with a space
  } catch {
    return undefined;
  }
}

/** Files with uncommitted changes that could affect the figures (the bench's own files and docs excluded). */
function uncommittedOutsideBench(): string[] | null {
  const status = git("status", "--porcelain");
  if (status === undefined) return null;
  return status
    .split("\n")
    .map((l) => l.slice(3))
    .filter((f) => f !== "" && !f.startsWith("bench/") && !f.startsWith("docs/"));
}

/** Which of the modules the end-to-end phases need are missing from modules.ts (or why it cannot be read). */
async function registeredModules(): Promise<{ names: string[]; missing: string[]; error?: string }> {
  try {
    const { allModules } = (await import("../modules.ts")) as typeof import("../modules.ts");
    const names = allModules.map((m) => m.name);
    return { names, missing: ONE_HOP_MODULES.filter((m) => !names.includes(m)) };
  } catch (err) {
    return { names: [], missing: [...ONE_HOP_MODULES], error: (err as Error).message };
  }
}

async function main(): Promise<number> {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const started = new Date();
  const loadStart = loadavg();
  progress(`selaras bench${opts.quick ? " (quick)" : ""}: ${cpus().length} cpus, bun ${Bun.version}, load average ${loadStart.map((x) => x.toFixed(2)).join(" ")}`);
  // Other work on the shared cores lowers every absolute figure: measure it before starting.
  const otherAtStart = await otherLoadCores(1000);
  const busy = (otherAtStart ?? 0) > 0.25;
  if (busy) progress(`WARNING: other processes keep ${otherAtStart!.toFixed(2)} of ${cpus().length} cores busy; absolute figures will be low`);
  const rows: Row[] = [];
  const errors: string[] = [];
  const out: Record<string, unknown> = {};

  if (opts.skipRpc) rows.push({ metric: "Phase 1: co-located RPC cost", value: "skipped (--skip-rpc)", bar: "—", result: "skip" });
  else {
    progress(`phase 1/${PHASES}: co-located RPC call cost`);
    try {
      const r = await runRpcBench(opts.rpc);
      out.rpc = r;
      rows.push(...rpcRows(r));
    } catch (err) {
      errors.push(`phase 1 failed: ${(err as Error).stack ?? err}`);
      rows.push({ metric: "Phase 1: co-located RPC cost", value: "error (see stderr)", bar: "—", result: "fail" });
    }
  }

  const mods = await registeredModules();
  // The Postgres phases need the shared Postgres and NATS: asked once, only when one of them runs.
  let infra: Promise<string | undefined> | undefined;
  for (const ph of E2E_PHASES) {
    const title = `Phase ${ph.phase}: ${ph.name}`;
    const key = `${ph.kind === "embedded" ? "e2e" : ph.kind}${ph.oneHop ? "OneHop" : ""}`;
    const skip = (why: string, value: string) => {
      progress(`phase ${ph.phase}/${PHASES}: ${ph.name} SKIPPED — ${why}`);
      out[key] = { skipped: why };
      rows.push({ metric: title, value, bar: "—", result: "skip" });
    };
    const skipFlag = [ph.skipFlag, ph.oneHop ? "skip-one-hop" : "skip-full"].find((f) => opts.skip(f));
    if (skipFlag) {
      out[key] = { skipped: `--${skipFlag}` };
      rows.push({ metric: title, value: `skipped (--${skipFlag})`, bar: "—", result: "skip" });
      continue;
    }
    if (mods.missing.length > 0) {
      skip(mods.error ? `modules.ts could not be loaded (${mods.error})` : `modules not registered in modules.ts yet: ${mods.missing.join(", ")}`, `skipped: missing ${mods.missing.join(", ")}`);
      continue;
    }
    if (ph.kind !== "embedded") {
      const problem = await (infra ??= infraProblem());
      if (problem) {
        skip(problem, "skipped: Postgres/NATS not reachable (see stderr)");
        continue;
      }
    }
    progress(`phase ${ph.phase}/${PHASES}: ${ph.name} (modules: ${mods.names.filter((m) => !ph.oneHop || ONE_HOP_MODULES.includes(m)).join(", ")})`);
    try {
      const embedded = ph.kind === "embedded";
      const rate = embedded ? opts.e2e.rate : opts.pgRate;
      const saga = opts.saga && ph.saga ? { rate: embedded ? opts.saga.rate : opts.saga.pgRate } : undefined;
      const replay = opts.replay && ph.replay ? { timeoutMs: REPLAY_TIMEOUT_MS } : undefined;
      const cdc = ph.cdc ? opts.cdc : undefined;
      const label = `${embedded ? "e2e" : ph.kind}${ph.oneHop ? "/one-hop" : ""}`;
      const e = await runE2eBench({ root: ROOT, modules: mods.names, ...opts.e2e, rate, kind: ph.kind, oneHop: ph.oneHop, label, saga, replay, cdc });
      out[key] = { bars: { ...ph.bars, ...ph.steps }, ...e };
      rows.push(...e2eRows(e, ph.bars, ph.prefix));
      const p = ph.prefix ? `${ph.prefix}: ` : "";
      const skipped = (what: string, flag: string) => rows.push({ metric: `${p}${what}`, value: `skipped (--${flag})`, bar: "—", result: "skip" });
      if (saga) rows.push(...sagaRows(e, ph.steps, ph.prefix));
      else if (ph.saga) skipped("Saga", "skip-saga");
      if (replay) rows.push(...replayRows(e, ph.steps, ph.prefix));
      else if (ph.replay) skipped("Replay of order-history", "skip-replay");
      if (cdc) rows.push(...cdcRows(e, ph.steps, ph.prefix));
      else if (ph.cdc) skipped("CDC (catalog.products → analytics)", "skip-cdc");
      for (const [name, r] of [["saga fixed-rate step", e.sagaRate], ["replay", e.replay], ["cdc", e.cdc]] as const) {
        if (r && "stepError" in r) errors.push(`phase ${ph.phase} (${ph.kind}), ${name} failed: ${r.stepError}`);
      }
      if (opts.e2e.profileDir) progress(`server CPU profiles written under ${opts.e2e.profileDir}/${ph.kind}${ph.oneHop ? "-one-hop" : ""}-*`);
    } catch (err) {
      errors.push(`phase ${ph.phase} (${ph.kind}) failed: ${(err as Error).stack ?? err}`);
      out[key] = { error: (err as Error).message };
      rows.push({ metric: title, value: "error (see stderr)", bar: "—", result: "fail" });
    }
  }

  const result = {
    date: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 100) / 10,
    quick: opts.quick,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      os: `${osPlatform()} ${release()} ${arch()}`,
      bun: Bun.version,
      loadAverageAtStart: loadStart,
      otherProcessesCoresAtStart: otherAtStart === undefined ? null : Math.round(otherAtStart * 100) / 100,
      loadAverageAtEnd: loadavg(),
    },
    git: { commit: git("rev-parse", "HEAD"), uncommittedOutsideBench: uncommittedOutsideBench() },
    notes: [
      ...(busy ? [`Other processes kept ${otherAtStart!.toFixed(2)} cores busy when the run started.`] : []),
      "The load generator runs in the bench process and competes with the server for the same cores.",
      "Ratios compare ways measured in the same run, interleaved; absolute figures move with machine load.",
    ],
    options: { rpc: opts.rpc, e2e: opts.e2e, pgRate: opts.pgRate, saga: opts.saga ?? null, replay: opts.replay ? { timeoutMs: REPLAY_TIMEOUT_MS } : null, cdc: opts.cdc ?? null },
    ...out,
    table: rows,
    errors,
  };
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, JSON.stringify(result, null, 2) + "\n");

  for (const e of errors) process.stderr.write(`\n${e}\n`);
  process.stdout.write(`\nSelaras benchmark — ${result.date}, ${result.machine.cpus} cpus (${result.machine.cpuModel ?? "?"}), bun ${Bun.version}${opts.quick ? ", --quick" : ""}\n`);
  process.stdout.write("The load generator shares the machine's cores with the server; figures are not server-only capacity.\n");
  if (opts.e2e.serverSets.length > 0) process.stdout.write(`Server configuration overrides (phases 2-4): ${opts.e2e.serverSets.map((kv) => `--set ${kv}`).join(" ")}\n`);
  if (busy) process.stdout.write(`Other processes kept ${otherAtStart!.toFixed(2)} cores busy at the start: absolute figures are low.\n`);
  process.stdout.write("\n");
  process.stdout.write(formatTable(rows) + "\n\n");
  process.stdout.write(`JSON: ${opts.out} (took ${result.durationSeconds} s)\n`);
  const failed = rows.some((r) => r.result === "fail");
  if (errors.length > 0) return 1;
  return opts.strict && failed ? 1 : 0;
}

process.exitCode = await main();
