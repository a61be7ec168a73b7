/**
 * Phase 2: the embedded binary end to end. Starts `bun main.ts` (every module, one process,
 * embedded SQLite and bus) as a child, seeds products and customers over REST, then:
 *  - fixed rate: an open-loop 1,000 orders/s; latency from the orders outbox commit (right before
 *    the 202) to the order-history read-model commit, and the orders relay lag, both from the
 *    server's own Prometheus histograms (increase between a scrape before and one after);
 *  - saturation: K closed-loop keep-alive clients posting orders for T seconds; accepted orders/s,
 *    and end-to-end orders/s = orders / time until the read model had caught up.
 * Then reads the read model back for a sample of customers to check every accepted order is there.
 */
import { buckets, increase, quantile, total, value, type Sample } from "./prom.ts";
import { closedLoop, openLoop, type LoadResult } from "./load.ts";
import { seed } from "./seed.ts";
import { startServer, type Server } from "./server.ts";
import { machineJiffies, percentile, progress, round, sleep } from "./util.ts";

export interface E2eOptions {
  root: string;
  clients: number;
  saturationSeconds: number;
  rate: number;
  rateSeconds: number;
  warmupSeconds: number;
  products: number;
  customers: number;
  /** Module names registered in modules.ts (to know whether inventory must be stocked). */
  modules: readonly string[];
  /** When set, the server writes a CPU profile (Bun's --cpu-prof, also as markdown) into this dir on exit. */
  profileDir?: string;
}

const PROJECTION = "order-history.projection";

/** Percentiles of a histogram's increase between two scrapes, in ms. */
export interface HistogramFigures {
  observations: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** True when a quantile fell in the +Inf bucket (the figure is then a lower bound). */
  overflow: boolean;
}

function histogramFigures(before: Sample[], after: Sample[], name: string, match: Record<string, string>): HistogramFigures {
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

function clientFigures(r: LoadResult) {
  const f = (xs: Float64Array | undefined, q: number) => (xs && xs.length > 0 ? round(percentile(xs, q)) : null);
  return {
    p50Ms: f(r.latencyMs, 0.5),
    p99Ms: f(r.latencyMs, 0.99),
    maxMs: f(r.latencyMs, 1),
    fromScheduleP50Ms: f(r.latencyFromScheduleMs, 0.5),
    fromScheduleP99Ms: f(r.latencyFromScheduleMs, 0.99),
  };
}

/**
 * CPU use over a phase, in cores: the server, this process (the load generator), and everything
 * else on the machine (other work competing for the same cores).
 */
class CpuWindow {
  readonly #wall = performance.now();
  readonly #server: number | undefined;
  readonly #self = process.cpuUsage();
  readonly #machine = machineJiffies();
  constructor(private readonly server: Server) {
    this.#server = server.cpuSeconds();
  }
  read(): { serverCores: number | null; benchCores: number; otherCores: number | null } {
    const wall = (performance.now() - this.#wall) / 1000;
    const now = this.server.cpuSeconds();
    const self = process.cpuUsage(this.#self);
    const machine = machineJiffies();
    const server = now === undefined || this.#server === undefined ? null : (now - this.#server) / wall;
    const bench = (self.user + self.system) / 1e6 / wall;
    const busy = machine && this.#machine ? (machine.busy - this.#machine.busy) / 100 / wall : null;
    return {
      serverCores: server === null ? null : round(server, 2),
      benchCores: round(bench, 2),
      otherCores: busy === null || server === null ? null : round(Math.max(0, busy - server - bench), 2),
    };
  }
}

/** Sum of a gauge over all its series (0 when absent). */
const sum = (s: Sample[], name: string) => value(s, name) ?? 0;

/** Polls /metrics until `done` holds; resolves with the performance.now() at which it did. */
async function until(server: Server, what: string, done: (s: Sample[]) => boolean, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const s = await server.scrape();
    if (done(s)) return performance.now();
    if (performance.now() > deadline) {
      const lags = s.filter((x) => x.name === "selaras_consumer_lag_events" && x.value > 0).map((x) => `${x.labels.consumer}=${x.value}`);
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; outbox backlog ${sum(s, "selaras_outbox_backlog")}, consumer lag ${lags.join(" ") || "0"}`);
    }
    await sleep(20);
  }
}

/** The read model has every order: the projection has no lag and no outbox holds an unpublished row. */
const caughtUp = (s: Sample[]) => value(s, "selaras_consumer_lag_events", { consumer: PROJECTION }) === 0 && sum(s, "selaras_outbox_backlog") === 0;
/** Everything is quiet: every consumer (sagas too) caught up, every outbox published. */
const settled = (s: Sample[]) => sum(s, "selaras_consumer_lag_events") === 0 && sum(s, "selaras_outbox_backlog") === 0;

function loadFigures(r: LoadResult) {
  return {
    seconds: round(r.seconds),
    sendSeconds: round(r.sendSeconds),
    sent: r.sent,
    sentPerSec: round(r.sent / r.sendSeconds, 0),
    accepted: r.accepted,
    rejected: r.rejected,
    failed: r.failed,
    acceptedPerSec: round(r.accepted / r.seconds, 0),
    maxInFlight: r.maxInFlight,
    client: clientFigures(r),
    errors: r.errors,
  };
}

export async function runE2eBench(opts: E2eOptions) {
  progress("e2e: starting `bun main.ts` on a fresh data dir");
  const bunArgs = opts.profileDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${opts.profileDir}`] : [];
  const server = await startServer({ root: opts.root, bunArgs });
  try {
    const consumers = (await server.scrape()).filter((s) => s.name === "selaras_consumer_lag_events").map((s) => s.labels.consumer!);
    if (!consumers.includes(PROJECTION)) throw new Error(`the server has no consumer ${PROJECTION}; its consumers: ${consumers.join(", ") || "none"}`);
    progress(`e2e: server ${server.url} (pid ${server.pid}); seeding ${opts.products} products and ${opts.customers} customers`);
    const data = await seed(server, opts);
    await until(server, "the seed data to settle", settled, 60_000);
    const url = `${server.url}/api/v1/orders`;
    const perCustomer = new Map<number, number>();
    const count = (r: LoadResult) => {
      for (const [c, n] of r.perCustomer) perCustomer.set(c, (perCustomer.get(c) ?? 0) + n);
      if (r.accepted === 0) throw new Error(`no order was accepted; first errors: ${r.errors.join(" | ")}`);
    };

    progress(`e2e/warm-up: ${opts.warmupSeconds} s, 16 closed-loop clients`);
    count(await closedLoop({ url, clients: 16, seconds: opts.warmupSeconds, bodies: data.bodies }));
    await until(server, "the warm-up to settle", settled, 120_000);

    progress(`e2e/fixed-rate: open loop at ${opts.rate} orders/s for ${opts.rateSeconds} s`);
    let before = await server.scrape();
    let cpu = new CpuWindow(server);
    const fixed = await openLoop({ url, rate: opts.rate, seconds: opts.rateSeconds, bodies: data.bodies });
    count(fixed);
    await until(server, "the fixed-rate phase to settle", settled, 120_000);
    let after = await server.scrape();
    const fixedRate = {
      targetRate: opts.rate,
      ...loadFigures(fixed),
      readModelLag: histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: PROJECTION }),
      relayLag: histogramFigures(before, after, "selaras_relay_lag_seconds", { module: "orders" }),
      cpu: cpu.read(),
    };

    progress(`e2e/saturation: ${opts.clients} closed-loop keep-alive clients for ${opts.saturationSeconds} s`);
    before = after;
    cpu = new CpuWindow(server);
    const start = performance.now();
    const sat = await closedLoop({ url, clients: opts.clients, seconds: opts.saturationSeconds, bodies: data.bodies });
    count(sat);
    const cpuLoad = cpu.read();
    progress(`e2e/saturation: ${sat.accepted} orders accepted; waiting for the read model to catch up`);
    const caughtAt = await until(server, "the read model to catch up", caughtUp, 180_000);
    await until(server, "the saturation phase to settle", settled, 180_000);
    after = await server.scrape();
    const caughtUpAfterSec = (caughtAt - start) / 1000;
    const saturation = {
      clients: opts.clients,
      ...loadFigures(sat),
      caughtUpAfterSec: round(caughtUpAfterSec),
      endToEndPerSec: round(sat.accepted / caughtUpAfterSec, 0),
      readModelLag: histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: PROJECTION }),
      relayLag: histogramFigures(before, after, "selaras_relay_lag_seconds", { module: "orders" }),
      cpuWhileLoading: cpuLoad,
    };

    const readModelCheck = await checkReadModel(server, data.customers, perCustomer);
    progress(`e2e: read model holds ${readModelCheck.found}/${readModelCheck.expected} orders of ${readModelCheck.customersChecked} sampled customers`);
    return {
      modules: opts.modules,
      projectionConsumer: PROJECTION,
      seed: { products: data.products.length, customers: data.customers.length, inventoryRestocked: data.restocked },
      fixedRate,
      saturation,
      readModelCheck,
    };
  } catch (err) {
    (err as Error).message += `\n--- server output (last lines) ---\n${server.tail()}`;
    throw err;
  } finally {
    await server.stop();
  }
}

/** Every accepted order of a sample of customers is in their order history. */
async function checkReadModel(server: Server, customers: readonly string[], perCustomer: Map<number, number>) {
  const sample = [...perCustomer.keys()].sort((a, b) => a - b).slice(0, 10);
  let expected = 0;
  let found = 0;
  for (const c of sample) {
    const res = await fetch(`${server.url}/api/v1/customers/${customers[c]}/orders`);
    const body = (await res.json()) as unknown;
    const list = Array.isArray(body) ? body : ((body as { orders?: unknown[] }).orders ?? []);
    expected += perCustomer.get(c)!;
    found += list.length;
  }
  return { customersChecked: sample.length, expected, found, ok: expected === found };
}
