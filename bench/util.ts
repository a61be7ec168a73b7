/** Small helpers shared by the benchmark phases: progress lines, sample statistics, formatting. */
import { readFileSync } from "node:fs";

const t0 = performance.now();

/** One progress line on stderr, prefixed with the seconds since the benchmark started. */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
}

/** The q-quantile (0..1) of raw samples (nearest rank); NaN when empty. Sorts a copy. */
export function percentile(samples: ArrayLike<number>, q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx]!;
}

export function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}

/** Rounds for display and JSON: 3 significant digits, at most `maxDecimals` decimals. */
export function round(x: number, maxDecimals = 3): number {
  if (!Number.isFinite(x)) return x;
  const digits = Math.min(maxDecimals, Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x) || 1))));
  return Number(x.toFixed(digits));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A growable list of numbers without boxing (latency samples). */
export class Samples {
  #buf = new Float64Array(1024);
  length = 0;
  push(x: number): void {
    if (this.length === this.#buf.length) {
      const next = new Float64Array(this.#buf.length * 2);
      next.set(this.#buf);
      this.#buf = next;
    }
    this.#buf[this.length++] = x;
  }
  values(): Float64Array {
    return this.#buf.subarray(0, this.length);
  }
}

/** Busy and total jiffies (1/100 s) of the whole machine from Linux /proc/stat; undefined elsewhere. */
export function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - f[4]!, total }; // minus idle and iowait
  } catch {
    return undefined;
  }
}

/** Cores the rest of the machine keeps busy over `ms` while this process sleeps; undefined off Linux. */
export async function otherLoadCores(ms: number): Promise<number | undefined> {
  const before = machineJiffies();
  const self = process.cpuUsage();
  const t = performance.now();
  await sleep(ms);
  const after = machineJiffies();
  if (!before || !after) return undefined;
  const wall = (performance.now() - t) / 1000;
  const mine = process.cpuUsage(self);
  return Math.max(0, (after.busy - before.busy) / 100 / wall - (mine.user + mine.system) / 1e6 / wall);
}
