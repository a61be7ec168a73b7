/**
 * `bun run bench` — the benchmark. Prints a table (metric, value, bar, pass/fail) on stdout,
 * progress on stderr, and writes every figure to bench/results/latest.json.
 *
 *   bun run bench               full run (about 40 s; longer only if the read model is slow to catch up)
 *   bun run bench --quick       smoke run (about 15 s)
 *   bun run bench --help        every option
 *
 * See docs/benchmarks.md for what each figure means and how it is measured.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem, platform as osPlatform, arch, release } from "node:os";
import { dirname, join, resolve } from "node:path";
import { runE2eBench } from "./e2e.ts";
import { e2eRows, formatTable, rpcRows, type Row } from "./report.ts";
import { runRpcBench } from "./rpc.ts";
import { otherLoadCores, progress } from "./util.ts";

const ROOT = resolve(import.meta.dir, "..");
const E2E_MODULES = ["customers", "orders", "order-history"];

const HELP = `bun run bench [options]

  --quick              smoke run (~15 s): fewer calls, shorter phases
  --skip-rpc           skip phase 1 (co-located RPC cost)
  --skip-e2e           skip phase 2 (embedded end to end)
  --clients=N          saturation: concurrent keep-alive clients (default 64)
  --seconds=N          saturation: seconds of load (default 20; quick 5)
  --rate=N             fixed-rate phase: orders/s (default 1000)
  --rate-seconds=N     fixed-rate phase: seconds (default 10; quick 4)
  --out=FILE           JSON output (default bench/results/latest.json)
  --strict             exit 1 when a figure misses its bar
  --profile-server     the server writes a CPU profile (.cpuprofile and .md) to .tmp/bench-profile/
`;

function parseArgs(argv: string[]) {
  const flags = new Map<string, string | true>();
  for (const a of argv) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument ${a}\n\n${HELP}`);
    flags.set(m[1]!, m[2] ?? true);
  }
  const known = ["quick", "skip-rpc", "skip-e2e", "clients", "seconds", "rate", "rate-seconds", "out", "strict", "help", "profile-server"];
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
    skipE2e: flags.has("skip-e2e"),
    out: resolve(typeof flags.get("out") === "string" ? (flags.get("out") as string) : join(ROOT, "bench/results/latest.json")),
    rpc: quick ? { calls: 6_000, warmup: 3_000, rounds: 6 } : { calls: 20_000, warmup: 5_000, rounds: 10 },
    e2e: {
      clients: num("clients", 64),
      saturationSeconds: num("seconds", quick ? 5 : 20),
      rate: num("rate", 1000),
      rateSeconds: num("rate-seconds", quick ? 4 : 10),
      warmupSeconds: quick ? 1 : 3,
      profileDir: flags.has("profile-server") ? join(ROOT, ".tmp/bench-profile") : undefined,
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

/** Which of the modules phase 2 needs are missing from modules.ts (or why it cannot be read). */
async function registeredModules(): Promise<{ names: string[]; missing: string[]; error?: string }> {
  try {
    const { allModules } = (await import("../modules.ts")) as typeof import("../modules.ts");
    const names = allModules.map((m) => m.name);
    return { names, missing: E2E_MODULES.filter((m) => !names.includes(m)) };
  } catch (err) {
    return { names: [], missing: E2E_MODULES, error: (err as Error).message };
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
    progress("phase 1/2: co-located RPC call cost");
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
  if (opts.skipE2e) {
    out.e2e = { skipped: "--skip-e2e" };
    rows.push({ metric: "Phase 2: embedded end to end", value: "skipped (--skip-e2e)", bar: "—", result: "skip" });
  } else if (mods.missing.length > 0) {
    const why = mods.error ? `modules.ts could not be loaded (${mods.error})` : `modules not registered in modules.ts yet: ${mods.missing.join(", ")}`;
    progress(`phase 2/2: SKIPPED — ${why}`);
    out.e2e = { skipped: why };
    rows.push({ metric: "Phase 2: embedded end to end", value: `skipped: missing ${mods.missing.join(", ")}`, bar: "—", result: "skip" });
  } else {
    progress(`phase 2/2: embedded end to end (modules: ${mods.names.join(", ")})`);
    try {
      const e = await runE2eBench({ root: ROOT, modules: mods.names, ...opts.e2e });
      out.e2e = e;
      rows.push(...e2eRows(e));
      if (opts.e2e.profileDir) progress(`server CPU profile written to ${opts.e2e.profileDir}`);
    } catch (err) {
      errors.push(`phase 2 failed: ${(err as Error).stack ?? err}`);
      out.e2e = { error: (err as Error).message };
      rows.push({ metric: "Phase 2: embedded end to end", value: "error (see stderr)", bar: "—", result: "fail" });
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
    options: { rpc: opts.rpc, e2e: opts.e2e },
    ...out,
    table: rows,
    errors,
  };
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, JSON.stringify(result, null, 2) + "\n");

  for (const e of errors) process.stderr.write(`\n${e}\n`);
  process.stdout.write(`\nSelaras benchmark — ${result.date}, ${result.machine.cpus} cpus (${result.machine.cpuModel ?? "?"}), bun ${Bun.version}${opts.quick ? ", --quick" : ""}\n`);
  process.stdout.write("The load generator shares the machine's cores with the server; figures are not server-only capacity.\n");
  if (busy) process.stdout.write(`Other processes kept ${otherAtStart!.toFixed(2)} cores busy at the start: absolute figures are low.\n`);
  process.stdout.write("\n");
  process.stdout.write(formatTable(rows) + "\n\n");
  process.stdout.write(`JSON: ${opts.out} (took ${result.durationSeconds} s)\n`);
  const failed = rows.some((r) => r.result === "fail");
  if (errors.length > 0) return 1;
  return opts.strict && failed ? 1 : 0;
}

process.exitCode = await main();
