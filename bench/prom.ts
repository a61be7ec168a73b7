/**
 * Just enough of the Prometheus text format for the benchmark: samples with labels, and
 * quantiles of a histogram's increase between two scrapes (what `histogram_quantile` over
 * `increase(...)` does in Prometheus, with the same linear interpolation inside a bucket).
 */

/** One sample line: `name{k="v",...} value`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses a scrape. Comment and blank lines are skipped. @example parseProm('a{x="1"} 2')[0].value === 2 */
export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === "n" ? "\n" : c));
    out.push({ name: m[1]!, labels, value: parseValue(m[3]!) });
  }
  return out;
}

function parseValue(v: string): number {
  if (v === "+Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  return Number(v);
}

/** Samples of `name` whose labels include every pair in `match`. */
export function select(samples: readonly Sample[], name: string, match: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The single value of `name{match}`, summed over any other labels; undefined when absent. */
export function value(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number | undefined {
  const found = select(samples, name, match);
  return found.length === 0 ? undefined : found.reduce((a, s) => a + s.value, 0);
}

/** A histogram's cumulative buckets, ascending by upper bound (the last is +Inf). */
export interface Buckets {
  readonly le: number[];
  readonly count: number[];
}

/** The buckets of histogram `name` for the series selected by `match` (summed if several). */
export function buckets(samples: readonly Sample[], name: string, match: Record<string, string>): Buckets {
  const byLe = new Map<number, number>();
  for (const s of select(samples, `${name}_bucket`, match)) {
    const le = parseValue(s.labels.le ?? "NaN");
    byLe.set(le, (byLe.get(le) ?? 0) + s.value);
  }
  const le = [...byLe.keys()].sort((a, b) => a - b);
  return { le, count: le.map((b) => byLe.get(b)!) };
}

/** `after - before`, bucket by bucket (a series absent before counts as zero). */
export function increase(before: Buckets, after: Buckets): Buckets {
  const prior = new Map(before.le.map((b, i) => [b, before.count[i]!]));
  return { le: after.le, count: after.le.map((b, i) => after.count[i]! - (prior.get(b) ?? 0)) };
}

/** Observations in the buckets (the +Inf bucket's count). */
export function total(b: Buckets): number {
  return b.count.length === 0 ? 0 : b.count[b.count.length - 1]!;
}

/**
 * The q-quantile (0..1) of cumulative buckets, interpolating linearly inside the bucket that holds
 * it, the lowest bucket starting at 0. `undefined` with no observations; when the quantile lies in
 * the +Inf bucket, the highest finite bound is returned and `overflow` is set.
 * @example quantile({ le: [1, 2, Infinity], count: [0, 10, 10] }, 0.5) // { value: 1.5, overflow: false }
 */
export function quantile(b: Buckets, q: number): { value: number; overflow: boolean } | undefined {
  const n = total(b);
  if (n <= 0) return undefined;
  const rank = q * n;
  let prevLe = 0;
  let prevCount = 0;
  for (let i = 0; i < b.le.length; i++) {
    const le = b.le[i]!;
    const c = b.count[i]!;
    if (c >= rank && c > prevCount) {
      if (le === Infinity) return { value: prevLe, overflow: true };
      return { value: prevLe + ((le - prevLe) * (rank - prevCount)) / (c - prevCount), overflow: false };
    }
    if (le !== Infinity) prevLe = le;
    prevCount = c;
  }
  return { value: prevLe, overflow: true };
}
