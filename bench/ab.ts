/**
 * A/B of the embedded server's CPU per order: runs `bench/cpu-sweep.ts` for two variants in
 * alternating rounds (A B, B A, A B, …, so the machine's drift falls on both), then prints per
 * rate each figure's median and range for A and for B, B's median over A's, and whether the two
 * ranges are apart. On the shared 2-core machine CPU per order at a fixed rate varies a few per
 * cent from run to run, confirmed orders/s at saturation ±20 %: this shows changes the full bench
 * cannot (docs/benchmarks.md, "Reading the figures on a 2-core machine").
 *
 * A variant is a checkout — this one, or with `--a-ref` / `--b-ref` that commit, checked out in
 * a worktree under .tmp/ab/ that shares this checkout's node_modules and is removed at the end —
 * plus config (`--a-set` / `--b-set`, passed to the server as `--set`) and environment variables
 * (`--a-env` / `--b-env`). Run it from the checkout's root.
 *
 * @example bun bench/ab.ts --a-ref=HEAD                          # the working tree against HEAD
 * @example bun bench/ab.ts --b-set='threads.workers=[]' --rounds=2
 * @example bun bench/ab.ts --a-ref=main~3 --b-ref=main --rates=1000 --out=.tmp/ab.json
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { SweepStep } from "./cpu-sweep.ts";
import { median } from "./util.ts";

export type VariantName = "A" | "B";

/** What one variant runs: a checkout, `--set` pairs for the server, environment variables. */
export interface Variant {
  readonly name: VariantName;
  /** The git ref asked for (undefined: this checkout as it is). */
  readonly ref?: string;
  readonly sets: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** One cpu-sweep run of a variant. */
export interface AbRun {
  readonly variant: VariantName;
  readonly round: number;
  readonly steps: readonly SweepStep[];
}

export interface Spread {
  /** Nearest rank: of an even count, the lower of the middle two. */
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

/** One figure at one rate: A's and B's spread over their runs, and B's median over A's. */
export interface AbRow {
  readonly rate: number;
  readonly figure: string;
  readonly a: Spread | null;
  readonly b: Spread | null;
  readonly ratio: number | null;
  /**
   * "apart": every B run lies above every A run, or every one below; "overlap": the ranges share
   * values; "too few runs": either variant has fewer than 2 (a single run is no range).
   */
  readonly ranges: "apart" | "overlap" | "too few runs";
}

/** The figures compared, from each rate's `SweepStep`. */
export const FIGURES: ReadonlyArray<{ label: string; of: (s: SweepStep) => number | null | undefined }> = [
  { label: "server CPU per order, µs", of: (s) => s.cpuPerOrderUs },
  { label: "server cores", of: (s) => s.totalCores },
  { label: "main thread cores", of: (s) => s.cores.main },
  { label: "module threads cores", of: (s) => s.cores["module threads"] },
  { label: "other threads cores (JIT, GC, checkpoints)", of: (s) => s.cores["other threads"] },
  { label: "saga 202 → CONFIRMED p50, ms", of: (s) => s.saga.p50Ms },
  { label: "saga 202 → CONFIRMED p99, ms", of: (s) => s.saga.p99Ms },
];

/** The order of the runs: A B, then B A, then A B … — each round starts with the variant the last one ended with. */
export function schedule(rounds: number): VariantName[] {
  const out: VariantName[] = [];
  for (let r = 0; r < rounds; r++) out.push(...(r % 2 === 0 ? (["A", "B"] as const) : (["B", "A"] as const)));
  return out;
}

function spread(xs: readonly number[]): Spread | null {
  if (xs.length === 0) return null;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** Per rate and figure: A's and B's spread, B/A of the medians, and whether the ranges are apart. */
export function summarize(runs: readonly AbRun[]): AbRow[] {
  const rates = [...new Set(runs.flatMap((r) => r.steps.map((s) => s.rate)))].sort((x, y) => x - y);
  const rows: AbRow[] = [];
  for (const rate of rates) {
    for (const { label, of } of FIGURES) {
      const values = (v: VariantName) =>
        runs
          .filter((r) => r.variant === v)
          .flatMap((r) => r.steps.filter((s) => s.rate === rate).map(of))
          .filter((x): x is number => typeof x === "number" && Number.isFinite(x));
      const a = spread(values("A"));
      const b = spread(values("B"));
      const ratio = a && b && a.median !== 0 ? b.median / a.median : null;
      const ranges = !a || !b || a.n < 2 || b.n < 2 ? "too few runs" : b.min > a.max || b.max < a.min ? "apart" : "overlap";
      rows.push({ rate, figure: label, a, b, ratio, ranges });
    }
  }
  return rows;
}

const num = (x: number) => (Number.isInteger(x) ? x.toLocaleString("en-US") : String(+x.toFixed(2)));
const showSpread = (s: Spread | null) => (s ? `${num(s.median)} [${num(s.min)}–${num(s.max)}]` : "—");

/**
 * How rarely two variants that do not differ still have ranges apart with `n` runs each: of the
 * C(2n, n) equally likely orders of the 2n figures, two put every B beyond every A. So 1 in this.
 */
export function chanceApart(n: number): number {
  let c = 1;
  for (let i = 1; i <= n; i++) c = (c * (n + i)) / i;
  return Math.round(c / 2);
}

/** The summary as a text table, one block per rate. */
export function formatSummary(rows: readonly AbRow[]): string {
  const lines: string[] = [];
  const head = ["figure", "A median [min–max]", "B median [min–max]", "B/A", "ranges"];
  for (const rate of [...new Set(rows.map((r) => r.rate))]) {
    const body = rows.filter((r) => r.rate === rate).map((r) => [r.figure, showSpread(r.a), showSpread(r.b), r.ratio === null ? "—" : r.ratio.toFixed(3), r.ranges]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
    lines.push(`${rate} orders/s`, line(head), ...body.map(line), "");
  }
  return lines.join("\n");
}

/** `KEY=VALUE` pairs from the command line; a pair without `=`, or whose key `key` refuses, is refused naming the option. */
export function pairs(option: string, values: readonly string[] | undefined, key = { test: /^[^=]+$/, what: "KEY=VALUE" }): Array<[string, string]> {
  return (values ?? []).map((kv) => {
    const i = kv.indexOf("=");
    const k = kv.slice(0, i);
    if (i <= 0 || !key.test.test(k)) throw new UsageError(`${option}: expected ${key.what}, got "${kv}"`);
    return [k, kv.slice(i + 1)];
  });
}

class UsageError extends Error {}

const USAGE = `usage: bun bench/ab.ts [--rounds=N] [--rates=R,R…] [--a-ref=REF] [--b-ref=REF]
                        [--a-set=KEY=VALUE…] [--b-set=KEY=VALUE…] [--a-env=NAME=VALUE…] [--b-env=NAME=VALUE…] [--out=FILE]
  --rounds   rounds of one run per variant (default 3; a run is one cpu-sweep, ~40 s per rate)
  --rates    fixed rates in orders/s (default 1000,2500)
  --a-ref, --b-ref   a git commit to run instead of this checkout (a worktree under .tmp/ab/)
  --a-set, --b-set   passed to that variant's server as --set KEY=VALUE (repeatable)
  --a-env, --b-env   environment variables of that variant's server (repeatable)
  --out      also write every run and the summary as JSON to FILE`;

function git(args: string[]): string {
  return execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** The checkout a variant runs: this one, or `ref` in a worktree (created now, removed by `remove`). */
function checkout(ref: string | undefined, log: (msg: string) => void): { root: string; label: string; remove(): void } {
  if (ref === undefined) return { root: process.cwd(), label: "this checkout", remove: () => {} };
  let sha: string;
  try {
    sha = git(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]).trim();
  } catch {
    throw new UsageError(`no commit named "${ref}" in this repository`);
  }
  const root = resolve(".tmp/ab", sha.slice(0, 12));
  if (!existsSync(join(root, "main.ts"))) git(["worktree", "add", "--detach", "--force", root, sha]);
  if (!existsSync(join(root, "node_modules"))) symlinkSync(resolve("node_modules"), join(root, "node_modules"), "dir");
  if (readFileSync(join(root, "package.json"), "utf8") !== readFileSync("package.json", "utf8")) {
    log(`warning: ${ref}'s package.json differs from this checkout's; it runs with this checkout's node_modules`);
  }
  return { root, label: `${ref} (${sha.slice(0, 9)})`, remove: () => git(["worktree", "remove", "--force", root]) };
}

/** The cpu-sweep running now, to stop on Ctrl-C. */
let running: ReturnType<typeof Bun.spawn> | undefined;

/** Runs cpu-sweep once for a variant and returns its steps; fails with its output when it fails. */
async function sweep(root: string, v: Variant, rates: readonly number[]): Promise<SweepStep[]> {
  const args = ["bench/cpu-sweep.ts", ...rates.map(String), "--json", `--root=${root}`, ...v.sets.map((s) => `--set=${s}`)];
  const proc = (running = Bun.spawn([process.execPath, ...args], { cwd: process.cwd(), env: { ...process.env, ...v.env }, stdout: "pipe", stderr: "pipe" }));
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const steps = out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as SweepStep);
  if (code !== 0 || steps.length !== rates.length) throw new Error(`cpu-sweep for ${v.name} exited with code ${code} after ${steps.length}/${rates.length} rates:\n${err}${out}`);
  return steps;
}

async function main(): Promise<number> {
  const log = (msg: string) => process.stderr.write(`[ab] ${msg}\n`);
  let opts;
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      allowPositionals: false,
      options: {
        rounds: { type: "string", default: "3" },
        rates: { type: "string", default: "1000,2500" },
        "a-ref": { type: "string" },
        "b-ref": { type: "string" },
        "a-set": { type: "string", multiple: true },
        "b-set": { type: "string", multiple: true },
        "a-env": { type: "string", multiple: true },
        "b-env": { type: "string", multiple: true },
        out: { type: "string" },
        help: { type: "boolean" },
      },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const rounds = Number(values.rounds);
    if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError(`--rounds: expected a whole number ≥ 1, got "${values.rounds}"`);
    const rates = values.rates.split(",").map(Number);
    if (rates.some((r) => !Number.isFinite(r) || r <= 0)) throw new UsageError(`--rates: expected orders/s > 0 separated by commas, got "${values.rates}"`);
    if (!existsSync("main.ts") || !existsSync("bench/cpu-sweep.ts")) throw new UsageError("run it from the checkout's root (no main.ts or bench/cpu-sweep.ts here)");
    const envName = { test: /^[A-Za-z_][A-Za-z0-9_]*$/, what: "NAME=VALUE, NAME of letters, digits and _ (not starting with a digit)" };
    const variant = (name: VariantName, ref: string | undefined, sets: string[] | undefined, env: string[] | undefined): Variant => ({
      name,
      ref,
      sets: pairs(`--${name.toLowerCase()}-set`, sets).map(([k, v]) => `${k}=${v}`),
      env: Object.fromEntries(pairs(`--${name.toLowerCase()}-env`, env, envName)),
    });
    const a = variant("A", values["a-ref"], values["a-set"], values["a-env"]);
    const b = variant("B", values["b-ref"], values["b-set"], values["b-env"]);
    const same = (x: Variant, y: Variant) => x.ref === y.ref && JSON.stringify(x.sets) === JSON.stringify(y.sets) && JSON.stringify(x.env) === JSON.stringify(y.env);
    if (same(a, b)) throw new UsageError("A and B are the same variant: give a ref, --set or --env to at least one of them");
    opts = { rounds, rates, a, b, out: values.out };
  } catch (err) {
    if (!(err instanceof UsageError) && !(err instanceof TypeError)) throw err;
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }

  const roots = new Map<VariantName, ReturnType<typeof checkout>>();
  // Two refs naming one commit share one worktree: remove each worktree once.
  const removeAll = () => {
    for (const c of new Map([...roots.values()].map((c) => [c.root, c])).values()) c.remove();
  };
  try {
    for (const v of [opts.a, opts.b]) roots.set(v.name, checkout(v.ref, log));
  } catch (err) {
    removeAll();
    if (!(err instanceof UsageError)) throw err;
    console.error(err.message);
    return 2;
  }
  // Ctrl-C or a kill: the running cpu-sweep is told too (it stops its server and removes its data
  // dir), then the worktrees go.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, async () => {
      running?.kill(signal);
      await Promise.race([running?.exited, new Promise((r) => setTimeout(r, 10_000))]);
      removeAll();
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  const describe = (v: Variant) => [roots.get(v.name)!.label, ...v.sets.map((s) => `--set ${s}`), ...Object.entries(v.env).map(([k, x]) => `${k}=${x}`)].join(", ");
  log(`A: ${describe(opts.a)}`);
  log(`B: ${describe(opts.b)}`);
  const order = schedule(opts.rounds);
  const runs: AbRun[] = [];
  try {
    for (const [i, name] of order.entries()) {
      const v = name === "A" ? opts.a : opts.b;
      const round = Math.floor(i / 2) + 1;
      const steps = await sweep(roots.get(name)!.root, v, opts.rates);
      runs.push({ variant: name, round, steps });
      const unconfirmed = steps.filter((s) => s.saga.confirmed < s.saga.orders);
      log(
        `run ${i + 1}/${order.length} (round ${round}, ${name}): ` +
          steps.map((s) => `${s.rate}/s ${num(s.cpuPerOrderUs)} µs/order, main ${s.cores.main ?? "?"} cores, saga p99 ${s.saga.p99Ms ?? "—"} ms`).join("; ") +
          (unconfirmed.length > 0 ? ` — NOT every order CONFIRMED at ${unconfirmed.map((s) => `${s.rate}/s (${s.saga.confirmed}/${s.saga.orders})`).join(", ")}` : ""),
      );
    }
  } finally {
    removeAll();
  }
  const rows = summarize(runs);
  console.log(`A: ${describe(opts.a)}\nB: ${describe(opts.b)}\n${opts.rounds} rounds, runs in the order ${order.join(" ")}\n`);
  console.log(formatSummary(rows));
  console.log(
    'B/A: the ratio of the medians. "apart": every B run lies above every A run, or every one below; "overlap": the ranges share values, so the difference is within the run-to-run noise. ' +
      `With ${opts.rounds} runs each, chance alone puts two ranges apart 1 time in ${chanceApart(opts.rounds)}: a figure apart once is a lead, apart again in a second A/B a finding.`,
  );
  if (opts.out) writeFileSync(opts.out, JSON.stringify({ date: new Date().toISOString(), a: { ...opts.a, label: roots.get("A")!.label }, b: { ...opts.b, label: roots.get("B")!.label }, runs, summary: rows }, null, 2));
  return 0;
}

if (import.meta.main) process.exitCode = await main();
