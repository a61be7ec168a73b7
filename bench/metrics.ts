/**
 * What the end-to-end steps share: percentiles of a server histogram between two scrapes, the
 * load generator's figures, and waiting (with polling paced by its own cost) until the system has
 * settled.
 */
import { cpuDelta, type PidCpu } from "./infra.ts";
import type { LoadResult } from "./load.ts";
import { buckets, increase, quantile, total, value, type Sample } from "./prom.ts";
import type { System } from "./system.ts";
import { machineJiffies, percentile, round, sleep } from "./util.ts";

/** The order-history read model's consumer: the end of the end-to-end path. */
export const PROJECTION = "order-history.projection";

/** Percentiles of a histogram's increase between two scrapes, in ms. */
export interface HistogramFigures {
  observations: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** True when a quantile fell in the +Inf bucket (the figure is then a lower bound). */
  overflow: boolean;
}

export function histogramFigures(before: Sample[], after: Sample[], name: string, match: Record<string, string>): HistogramFigures {
  const d = increase(buckets(before, name, match), buckets(after, name, match));
  const p50 = quantile(d, 0.5);
  const p99 = quantile(d, 0.99);
  return {
    observations: total(d),
    p50Ms: p50 ? round(p50.value * 1000) : null,
    p99Ms: p99 ? round(p99.value * 1000) : null,
    overflow: Boolean(p50?.overflow || p99?.overflow),
  };
}

export function clientFigures(r: LoadResult) {
  const f = (xs: Float64Array | undefined, q: number) => (xs && xs.length > 0 ? round(percentile(xs, q)) : null);
  return {
    p50Ms: f(r.latencyMs, 0.5),
    p99Ms: f(r.latencyMs, 0.99),
    maxMs: f(r.latencyMs, 1),
    fromScheduleP50Ms: f(r.latencyFromScheduleMs, 0.5),
    fromScheduleP99Ms: f(r.latencyFromScheduleMs, 0.99),
  };
}

/** Sum of a gauge over all its series (0 when absent). */
export const sum = (s: Sample[], name: string) => value(s, name) ?? 0;

/** Consumers with a non-zero lag in a scrape, e.g. `inventory.saga=1204`. */
export const laggards = (s: Sample[]) =>
  s
    .filter((x) => x.name === "selaras_consumer_lag_events" && x.value > 0)
    .map((x) => `${x.labels.consumer}=${x.value}`)
    .join(" ") || "none";

/**
 * Polls /metrics until `done` holds; resolves with the performance.now() at which it did, or —
 * after `timeoutMs` — with `undefined` and what was still behind. A scrape costs the scraped
 * process CPU (15-60 ms under Bun, growing with its heap: prom-client's heap-space statistics), so
 * after a scrape that took t ms the next one waits max(`pollMs`, 9 t): the polling never takes
 * more than ~10 % of the system it waits for.
 */
export async function waitUntil(
  server: System,
  done: (s: Sample[]) => boolean,
  timeoutMs: number,
  pollMs: number,
): Promise<{ at?: number; behind?: string; scrapes: number; meanScrapeMs: number }> {
  const deadline = performance.now() + timeoutMs;
  let scrapes = 0;
  let scraping = 0;
  for (;;) {
    const t = performance.now();
    const s = await server.scrape();
    const now = performance.now();
    scrapes++;
    scraping += now - t;
    const stats = { scrapes, meanScrapeMs: round(scraping / scrapes) };
    if (done(s)) return { at: now, ...stats };
    if (now > deadline) return { behind: `outbox backlog ${sum(s, "selaras_outbox_backlog")}, consumer lag ${laggards(s)}, sagas in flight ${sagasInFlight(s)}, STUCK ${value(s, "selaras_sagas", { state: "STUCK" }) ?? 0}`, ...stats };
    await sleep(Math.max(pollMs, 9 * (now - t)));
  }
}

/** `waitUntil` that throws on timeout (before the measurements start, nothing can be reported). */
export async function until(server: System, what: string, done: (s: Sample[]) => boolean, timeoutMs: number, pollMs: number): Promise<number> {
  const r = await waitUntil(server, done, timeoutMs, pollMs);
  if (r.at === undefined) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; ${r.behind}`);
  return r.at;
}

/**
 * Order sagas still moving — AWAITING_PAYMENT, AWAITING_STOCK, COMPENSATING in orders'
 * `selaras_sagas` gauge (0 without the gauge). STUCK is left out: it waits for an operator.
 */
export const sagasInFlight = (s: Sample[]) => ["AWAITING_PAYMENT", "AWAITING_STOCK", "COMPENSATING"].reduce((n, state) => n + (value(s, "selaras_sagas", { state }) ?? 0), 0);

/**
 * Everything is quiet: every consumer (sagas too) caught up, every outbox published and no order
 * saga in flight — in one scrape, and the projection's gauge present (a scrape where a bus gauge
 * could not be read has none, and must not look settled). The saga gauge is there because the
 * bus and outbox gauges alone were seen at 0 in the split while most orders of the step were
 * still PENDING (docs/benchmarks.md, "Caught up = settled").
 */
export const settled = (s: Sample[]) => quiet(s) && sagasInFlight(s) === 0;

/** Every consumer caught up and every outbox published, in one scrape with the projection's gauge present. */
export const quiet = (s: Sample[]) =>
  value(s, "selaras_consumer_lag_events", { consumer: PROJECTION }) !== undefined &&
  sum(s, "selaras_consumer_lag_events") === 0 &&
  sum(s, "selaras_outbox_backlog") === 0;

/**
 * When the read model has every order in its final state: `settled` — the projection also applies
 * what the order saga decides (CONFIRMED/CANCELLED), so its own lag can touch 0 between two saga
 * steps while orders are still in flight. On one hop `quiet`: there the sagas wait for a payment
 * that never comes (`one-hop.ts`), and the final state is the placed order.
 */
export const settledOf = (system: System) => (system.oneHop ? quiet : settled);

export function loadFigures(r: LoadResult) {
  return {
    seconds: round(r.seconds),
    sendSeconds: round(r.sendSeconds),
    sent: r.sent,
    sentPerSec: round(r.sent / r.sendSeconds, 0),
    accepted: r.accepted,
    rejected: r.rejected,
    throttled: r.throttled,
    failed: r.failed,
    acceptedPerSec: round(r.accepted / r.seconds, 0),
    maxInFlight: r.maxInFlight,
    client: clientFigures(r),
    errors: r.errors,
  };
}

const sumDefined = (xs: Record<string, number | undefined>) => {
  let t = 0;
  for (const x of Object.values(xs)) {
    if (x === undefined) return undefined;
    t += x;
  }
  return t;
};

/**
 * CPU milliseconds per order over windows that together did those orders' work (a load and
 * its catch-up): the server processes', and with Postgres and NATS added (Postgres topologies;
 * their other clients included). A figure that depends less on the rate than throughput does,
 * to compare changes on a noisy machine.
 */
export function cpuPerOrder(windows: ReadonlyArray<{ serverSeconds: number | null; serviceSeconds: number | null }>, orders: number) {
  const sum = (xs: ReadonlyArray<number | null>) => (xs.some((x) => x === null) ? null : xs.reduce<number>((t, x) => t + x!, 0));
  const server = sum(windows.map((w) => w.serverSeconds));
  const services = sum(windows.map((w) => w.serviceSeconds));
  const perOrder = (s: number | null) => (s === null || orders === 0 ? null : round((s * 1000) / orders, 3));
  return { serverMs: perOrder(server), withServicesMs: services === null ? null : perOrder(server === null ? null : server + services) };
}

/**
 * CPU use over a phase, in cores: the server processes (together and each), this process (the
 * load generator), Postgres (this run's sessions and the server's background processes) and
 * NATS (Postgres topologies), and everything else on the machine (other work competing for the
 * same cores — other clients of the shared Postgres count here).
 */
export class CpuWindow {
  readonly #wall = performance.now();
  readonly #server: Record<string, number | undefined>;
  readonly #self = process.cpuUsage();
  readonly #machine = machineJiffies();
  private constructor(
    private readonly system: System,
    private readonly services: { postgres: PidCpu; nats: PidCpu } | undefined,
  ) {
    this.#server = system.cpuSeconds();
  }
  static async start(system: System): Promise<CpuWindow> {
    return new CpuWindow(system, await system.serviceCpuSeconds());
  }
  async read() {
    const services = await this.system.serviceCpuSeconds();
    const wall = (performance.now() - this.#wall) / 1000;
    const now = this.system.cpuSeconds();
    const self = process.cpuUsage(this.#self);
    const machine = machineJiffies();
    const perProcess: Record<string, number | null> = {};
    for (const [n, v] of Object.entries(now)) perProcess[n] = v === undefined || this.#server[n] === undefined ? null : round((v - this.#server[n]!) / wall, 2);
    const a = sumDefined(this.#server);
    const b = sumDefined(now);
    const server = a === undefined || b === undefined ? null : (b - a) / wall;
    const pg = services && this.services ? cpuDelta(this.services.postgres, services.postgres) / wall : null;
    const nats = services && this.services ? cpuDelta(this.services.nats, services.nats) / wall : null;
    const bench = (self.user + self.system) / 1e6 / wall;
    const busy = machine && this.#machine ? (machine.busy - this.#machine.busy) / 100 / wall : null;
    return {
      serverCores: server === null ? null : round(server, 2),
      /** CPU seconds the server processes used in the window (all of them together). */
      serverSeconds: a === undefined || b === undefined ? null : round(b - a, 3),
      /** Postgres's and NATS's CPU seconds in the window (Postgres topologies). */
      serviceSeconds: pg === null || nats === null ? null : round((pg + nats) * wall, 3),
      serverCoresByProcess: perProcess,
      postgresCores: pg === null ? null : round(pg, 2),
      natsCores: nats === null ? null : round(nats, 2),
      benchCores: round(bench, 2),
      otherCores: busy === null || server === null ? null : round(Math.max(0, busy - server - bench - (pg ?? 0) - (nats ?? 0)), 2),
    };
  }
}
