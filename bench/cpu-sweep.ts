/**
 * CPU per order at fixed rates, embedded: starts `main.ts` (its default module thread), seeds,
 * warms up, then for each rate runs an open loop for 8 s and prints the server's cores (main
 * thread, module threads, the rest: JIT, GC, checkpoint threads — from /proc/<pid>/task), CPU per
 * order, the saga's 202 → CONFIRMED p50/p99 and each saga consumer's commit → inbox p50/p99.
 * Shows how per-order cost falls as batching sets in (docs/benchmarks.md, runs Q). Linux only.
 *
 * `--by-thread` splits "other threads" by thread name (JITWorker, HeapHelper, the checkpoint
 * thread's "Worker", …); `--sys` adds each kind's kernel share ("… sys", already in its total);
 * `--profile=DIR` has the server write a CPU profile of its main thread there (Bun's --cpu-prof);
 * `--root=DIR` runs the server of another checkout (its `main.ts`; `bench/ab.ts` uses it);
 * `--json` prints one JSON object per rate instead of the line (`SweepStep`).
 *
 * @example bun bench/cpu-sweep.ts 100 300 1000 --set=threads.workers=[]
 * @example bun bench/cpu-sweep.ts 1000 2500 --by-thread --sys
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { closedLoop, openLoop } from "./load.ts";
import { histogramFigures, settledOf, until } from "./metrics.ts";
import { readOutcomes, sagaFigures } from "./saga.ts";
import { seed } from "./seed.ts";
import { startSystem } from "./system.ts";

const USAGE =
  "usage: bun bench/cpu-sweep.ts RATE [RATE…] [--set=KEY=VALUE…] [--by-thread] [--sys] [--profile=DIR] [--root=DIR] [--json]  (rates in orders/s, e.g. 100 300 1000)";
/** The parsed command line; exits with code 2 and the usage on anything it cannot take. */
function parseCommandLine() {
  try {
    const { values, positionals } = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      allowPositionals: true,
      options: {
        set: { type: "string", multiple: true, default: [] },
        "by-thread": { type: "boolean", default: false },
        sys: { type: "boolean", default: false },
        profile: { type: "string" },
        root: { type: "string", default: process.cwd() },
        json: { type: "boolean", default: false },
      },
    });
    const rates = positionals.map(Number);
    if (rates.length === 0 || rates.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error("expected one or more rates > 0");
    if (values.profile === "") throw new Error("--profile: expected a directory");
    if (!existsSync(join(values.root, "main.ts"))) throw new Error(`--root: no main.ts in ${values.root}`);
    return { rates, sets: values.set, byThread: values["by-thread"], sys: values.sys, profileDir: values.profile, root: values.root, json: values.json };
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const { rates, sets, byThread, sys, profileDir, root, json } = parseCommandLine();
const SECONDS = 8;
const SAGA_CONSUMERS = ["payments.saga", "inventory.saga", "orders.saga"];

/** One rate's figures, as `--json` prints them (one object per line). */
export interface SweepStep {
  rate: number;
  accepted: number;
  /** Cores by kind of thread ("main", "module threads", "other threads", …; `--sys` adds "<kind> sys", already counted in its kind). */
  cores: Record<string, number>;
  totalCores: number;
  cpuPerOrderUs: number;
  /** 202 → CONFIRMED; null when no order was confirmed. */
  saga: { orders: number; confirmed: number; p50Ms: number | null; p99Ms: number | null };
  /** Each saga consumer's relay commit → consumer commit. */
  hops: Record<string, { p50Ms: number | null; p99Ms: number | null }>;
}
const MODULES = ["catalog", "customers", "orders", "payments", "inventory", "notifications", "analytics", "order-history"];

/** CPU seconds so far per kind of thread of `pid` (with `--sys`, also each kind's kernel part as "<kind> sys"). */
function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const kind = tid === String(pid) ? "main" : name.startsWith("selaras") ? "module threads" : byThread ? name : "other threads";
      out[kind] = (out[kind] ?? 0) + (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks
      if (sys) out[`${kind} sys`] = (out[`${kind} sys`] ?? 0) + Number(f[12]) / 100;
    } catch {
      // a thread that ended meanwhile
    }
  }
  return out;
}

const server = await startSystem("embedded", { root, modules: MODULES, serverSets: sets, profileDir });
const pid = server.processes.all!.pid;
try {
  const settled = settledOf(server);
  const data = await seed(server.urlOf, { products: 50, customers: 200, modules: server.modules });
  await until(server, "the seed data to settle", settled, 60_000, 20);
  const url = `${server.urlOf("orders")}/api/v1/orders`;
  await closedLoop({ url, clients: 16, seconds: 3, bodies: data.bodies });
  await until(server, "the warm-up to settle", settled, 120_000, 20);
  for (const rate of rates) {
    const before = await server.scrape();
    const cpu0 = threadCpu(pid);
    const t0 = performance.now();
    const startMs = Date.now();
    const r = await openLoop({ url, rate, seconds: SECONDS, bodies: data.bodies, record: true });
    const cpu1 = threadCpu(pid);
    const wall = (performance.now() - t0) / 1000;
    await until(server, "the step to settle", settled, 120_000, 20);
    const after = await server.scrape();
    // Threads that used no measurable CPU (a pool thread that slept) are left out.
    const used = Object.keys(cpu1).map((k) => [k, (cpu1[k]! - (cpu0[k] ?? 0)) / wall] as const);
    // The total from the unrounded figures: summing the rounded ones would step CPU per order by ~10 µs at 1,000/s.
    const total = used.reduce((a, [k, v]) => (k.endsWith(" sys") ? a : a + v), 0);
    const cores = Object.fromEntries(used.map(([k, v]) => [k, +v.toFixed(2)] as const).filter(([k, v]) => v > 0 || k === "main"));
    const saga = sagaFigures(r.placed!, await readOutcomes(server.urlOf("orders"), r.placed!.ids), startMs);
    const hops = Object.fromEntries(
      SAGA_CONSUMERS.map((consumer) => {
        const h = histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer });
        return [consumer, { p50Ms: h.p50Ms, p99Ms: h.p99Ms }];
      }),
    );
    const step: SweepStep = {
      rate,
      accepted: r.accepted,
      cores,
      totalCores: +total.toFixed(2),
      cpuPerOrderUs: Math.round((total * 1e6) / (r.accepted / wall)),
      saga: { orders: saga.orders, confirmed: saga.confirmed, p50Ms: saga.placedToConfirmed.p50Ms, p99Ms: saga.placedToConfirmed.p99Ms },
      hops,
    };
    if (json) console.log(JSON.stringify(step));
    else
      console.log(
        `${rate} orders/s: ${total.toFixed(2)} cores ${JSON.stringify(cores)}, ${step.cpuPerOrderUs} µs CPU per order; ` +
          `saga p50/p99 ${step.saga.p50Ms}/${step.saga.p99Ms} ms; ${SAGA_CONSUMERS.map((c) => `${c} ${hops[c]!.p50Ms}/${hops[c]!.p99Ms} ms`).join(", ")}`,
      );
  }
} finally {
  await server.stop();
}
