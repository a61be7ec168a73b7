/**
 * The end-to-end phases: the binary in one of its topologies (`system.ts`: embedded; every module
 * in one process on Postgres + NATS; the processes of config/split.json on Postgres + NATS),
 * driven over REST. Seeds products and customers, then:
 *  - fixed rate: an open loop at a fixed orders/s; latency from the orders outbox commit (right
 *    before the 202) to the order-history read-model commit, and the orders relay lag, both from
 *    the servers' own Prometheus histograms (increase between a scrape before and one after);
 *  - saturation: K closed-loop keep-alive clients posting orders for T seconds; accepted orders/s,
 *    and end-to-end orders/s = orders / time until the read model had caught up.
 * Then reads the read model back for a sample of customers to check every accepted order is there.
 */
import { cpuDelta, type PidCpu } from "./infra.ts";
import { buckets, increase, quantile, total, value, type Sample } from "./prom.ts";
import { closedLoop, openLoop, type LoadResult } from "./load.ts";
import { seed } from "./seed.ts";
import { startSystem, type System, type SystemKind } from "./system.ts";
import { machineJiffies, percentile, progress, round, sleep } from "./util.ts";

export interface E2eOptions {
  root: string;
  /** Which topology runs (default embedded). */
  kind?: SystemKind;
  /** Label of progress lines (default `e2e`). */
  label?: string;
  clients: number;
  saturationSeconds: number;
  rate: number;
  rateSeconds: number;
  warmupSeconds: number;
  products: number;
  customers: number;
  /** Module names registered in modules.ts (to know whether inventory must be stocked). */
  modules: readonly string[];
  /** When set, every server process writes a CPU profile (Bun's --cpu-prof, also as markdown) under this dir on exit. */
  profileDir?: string;
  /** `KEY=VALUE` pairs passed as `--set` to every server process (default: none). */
  serverSets?: readonly string[];
  /** Shortest interval between two scrapes of /metrics while waiting (default 20 ms; see `waitUntil`). */
  pollMs?: number;
}

const PROJECTION = "order-history.projection";
/** How long to wait after the saturation load for the read model to catch up (then: not caught up). */
const CATCH_UP_TIMEOUT_MS = 180_000;

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

const sumDefined = (xs: Record<string, number | undefined>) => {
  let t = 0;
  for (const x of Object.values(xs)) {
    if (x === undefined) return undefined;
    t += x;
  }
  return t;
};

/**
 * CPU use over a phase, in cores: the server processes (together and each), this process (the
 * load generator), Postgres (this run's sessions and the server's background processes) and
 * NATS (Postgres topologies), and everything else on the machine (other work competing for the
 * same cores — other clients of the shared Postgres count here).
 */
class CpuWindow {
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
      serverCoresByProcess: perProcess,
      postgresCores: pg === null ? null : round(pg, 2),
      natsCores: nats === null ? null : round(nats, 2),
      benchCores: round(bench, 2),
      otherCores: busy === null || server === null ? null : round(Math.max(0, busy - server - bench - (pg ?? 0) - (nats ?? 0)), 2),
    };
  }
}

/** Sum of a gauge over all its series (0 when absent). */
const sum = (s: Sample[], name: string) => value(s, name) ?? 0;

/** Consumers with a non-zero lag in a scrape, e.g. `inventory.saga=1204`. */
const laggards = (s: Sample[]) =>
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
async function waitUntil(
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
    if (now > deadline) return { behind: `outbox backlog ${sum(s, "selaras_outbox_backlog")}, consumer lag ${laggards(s)}`, ...stats };
    await sleep(Math.max(pollMs, 9 * (now - t)));
  }
}

/** `waitUntil` that throws on timeout (before the measurements start, nothing can be reported). */
async function until(server: System, what: string, done: (s: Sample[]) => boolean, timeoutMs: number, pollMs: number): Promise<number> {
  const r = await waitUntil(server, done, timeoutMs, pollMs);
  if (r.at === undefined) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; ${r.behind}`);
  return r.at;
}

/**
 * Everything is quiet: every consumer (sagas too) caught up, every outbox published — in one
 * scrape, and the projection's gauge present (a scrape where a bus gauge could not be read has
 * none, and must not look settled).
 */
const settled = (s: Sample[]) =>
  value(s, "selaras_consumer_lag_events", { consumer: PROJECTION }) !== undefined && sum(s, "selaras_consumer_lag_events") === 0 && sum(s, "selaras_outbox_backlog") === 0;
/**
 * The read model has every order, in its final state: settled. The projection also applies what
 * the order saga decides (CONFIRMED/CANCELLED after payments and inventory answered), so its own
 * lag can touch 0 between two saga steps while orders are still in flight; only every consumer and
 * every outbox at 0 in one scrape means every order went all the way through.
 */
const caughtUp = settled;

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

/** Per module: commits and the mean bodies per COMMIT (group commit) between two scrapes. */
function commitFigures(before: Sample[], after: Sample[]) {
  const out: Record<string, { commits: number; bodies: number; meanBodiesPerCommit: number | null }> = {};
  const modules = new Set(after.filter((s) => s.name === "selaras_storage_commit_bodies_count").map((s) => s.labels.module!));
  for (const module of modules) {
    const d = (name: string) => (value(after, name, { module }) ?? 0) - (value(before, name, { module }) ?? 0);
    const commits = d("selaras_storage_commit_bodies_count");
    const bodies = d("selaras_storage_commit_bodies_sum");
    out[module] = { commits, bodies, meanBodiesPerCommit: commits > 0 ? round(bodies / commits, 2) : null };
  }
  return out;
}

/** Deliveries each consumer handled between two scrapes, by result (processed, duplicate, conflict-retried, failed). */
function consumerFigures(before: Sample[], after: Sample[]) {
  const out: Record<string, Record<string, number>> = {};
  for (const x of after.filter((x) => x.name === "selaras_events_consumed_total")) {
    const { consumer, result } = x.labels as { consumer: string; result: string };
    const n = (value(after, x.name, { consumer, result }) ?? 0) - (value(before, x.name, { consumer, result }) ?? 0);
    if (n > 0) (out[consumer] ??= {})[result] = n;
  }
  return out;
}

/** Module-to-module calls between two scrapes, by transport and method: calls and p50/p99. */
function rpcFigures(before: Sample[], after: Sample[]) {
  const out: Record<string, HistogramFigures> = {};
  const keys = new Set(after.filter((s) => s.name === "selaras_rpc_client_duration_seconds_count").map((s) => `${s.labels.transport}|${s.labels.service}|${s.labels.method}`));
  for (const k of keys) {
    const [transport, service, method] = k.split("|") as [string, string, string];
    const f = histogramFigures(before, after, "selaras_rpc_client_duration_seconds", { transport, service, method });
    if (f.observations > 0) out[`${transport} ${service.split(".").pop()}/${method}`] = f;
  }
  return out;
}

export async function runE2eBench(opts: E2eOptions) {
  const kind = opts.kind ?? "embedded";
  const label = opts.label ?? "e2e";
  const pollMs = opts.pollMs ?? 20;
  progress(`${label}: starting the ${kind} topology${kind === "embedded" ? " (`bun main.ts` on a fresh data dir)" : ` (${kind === "split" ? "config/split.json" : "config/single-postgres.json"} on Postgres + NATS)`}`);
  const server = await startSystem(kind, { root: opts.root, modules: opts.modules, profileDir: opts.profileDir, serverSets: opts.serverSets });
  try {
    const consumers = (await server.scrape()).filter((s) => s.name === "selaras_consumer_lag_events").map((s) => s.labels.consumer!);
    if (!consumers.includes(PROJECTION)) throw new Error(`the server has no consumer ${PROJECTION}; its consumers: ${consumers.join(", ") || "none"}`);
    const where = Object.entries(server.processes)
      .map(([n, p]) => `${n} ${p.url} (pid ${p.pid})`)
      .join(", ");
    progress(`${label}: ${where}${server.prefix ? `, prefix ${server.prefix}` : ""}; seeding ${opts.products} products and ${opts.customers} customers`);
    const data = await seed(server.urlOf, { ...opts, modules: server.modules });
    await until(server, "the seed data to settle", settled, 60_000, pollMs);
    const url = `${server.urlOf("orders")}/api/v1/orders`;
    const perCustomer = new Map<number, number>();
    const count = (r: LoadResult) => {
      for (const [c, n] of r.perCustomer) perCustomer.set(c, (perCustomer.get(c) ?? 0) + n);
      if (r.accepted === 0) throw new Error(`no order was accepted; first errors: ${r.errors.join(" | ")}`);
    };

    progress(`${label}/warm-up: ${opts.warmupSeconds} s, 16 closed-loop clients`);
    count(await closedLoop({ url, clients: 16, seconds: opts.warmupSeconds, bodies: data.bodies }));
    await until(server, "the warm-up to settle", settled, 120_000, pollMs);

    progress(`${label}/fixed-rate: open loop at ${opts.rate} orders/s for ${opts.rateSeconds} s`);
    let before = await server.scrape();
    let cpu = await CpuWindow.start(server);
    const fixedStart = performance.now();
    const fixed = await openLoop({ url, rate: opts.rate, seconds: opts.rateSeconds, bodies: data.bodies });
    count(fixed);
    const fixedSettled = await waitUntil(server, settled, 120_000, pollMs);
    if (fixedSettled.behind) progress(`${label}/fixed-rate: WARNING not settled after 120 s (${fixedSettled.behind}); figures cover what was done by then`);
    let after = await server.scrape();
    const fixedRate = {
      targetRate: opts.rate,
      ...loadFigures(fixed),
      settledAfterLoadSec: fixedSettled.at === undefined ? null : round((fixedSettled.at - fixedStart) / 1000 - fixed.seconds),
      notSettled: fixedSettled.behind,
      readModelLag: histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: PROJECTION }),
      relayLag: histogramFigures(before, after, "selaras_relay_lag_seconds", { module: "orders" }),
      cpu: await cpu.read(),
      commits: commitFigures(before, after),
      consumers: consumerFigures(before, after),
      rpc: rpcFigures(before, after),
    };

    progress(`${label}/saturation: ${opts.clients} closed-loop keep-alive clients for ${opts.saturationSeconds} s`);
    before = after;
    cpu = await CpuWindow.start(server);
    const start = performance.now();
    const sat = await closedLoop({ url, clients: opts.clients, seconds: opts.saturationSeconds, bodies: data.bodies });
    count(sat);
    const cpuLoad = await cpu.read();
    const cpuCatch = await CpuWindow.start(server);
    progress(`${label}/saturation: ${sat.accepted} orders accepted; waiting for the read model to catch up`);
    const caught = await waitUntil(server, caughtUp, CATCH_UP_TIMEOUT_MS, pollMs);
    // Not caught up in time: the end-to-end rate is below accepted / (time waited) — an upper bound.
    if (caught.behind) progress(`${label}/saturation: WARNING read model not caught up ${CATCH_UP_TIMEOUT_MS / 1000} s after the load (${caught.behind})`);
    after = await server.scrape();
    const caughtUpAfterSec = ((caught.at ?? performance.now()) - start) / 1000;
    const saturation = {
      clients: opts.clients,
      ...loadFigures(sat),
      caughtUp: caught.at !== undefined,
      caughtUpAfterSec: round(caughtUpAfterSec),
      /** When not caught up: an upper bound (orders / time waited). */
      endToEndPerSec: round(sat.accepted / caughtUpAfterSec, 0),
      notCaughtUp: caught.behind,
      /** Scrapes of /metrics while waiting for the read model, and their mean wall time. */
      catchUpPolling: { scrapes: caught.scrapes, meanScrapeMs: caught.meanScrapeMs },
      readModelLag: histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: PROJECTION }),
      relayLag: histogramFigures(before, after, "selaras_relay_lag_seconds", { module: "orders" }),
      cpuWhileLoading: cpuLoad,
      cpuCatchingUp: await cpuCatch.read(),
      commits: commitFigures(before, after),
      consumers: consumerFigures(before, after),
      rpc: rpcFigures(before, after),
    };

    const readModelCheck = await checkReadModel(server, data.customers, perCustomer);
    progress(`${label}: read model holds ${readModelCheck.found}/${readModelCheck.expected} orders of ${readModelCheck.customersChecked} sampled customers`);
    return {
      topology: kind,
      serverSets: opts.serverSets ?? [],
      pollMs,
      processes: Object.fromEntries(Object.entries(server.processes).map(([n, p]) => [n, server.modules.filter((m) => server.urlOf(m) === p.url)])),
      prefix: server.prefix,
      modules: server.modules,
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
async function checkReadModel(server: System, customers: readonly string[], perCustomer: Map<number, number>) {
  const sample = [...perCustomer.keys()].sort((a, b) => a - b).slice(0, 10);
  let expected = 0;
  let found = 0;
  for (const c of sample) {
    const res = await fetch(`${server.urlOf("order-history")}/api/v1/customers/${customers[c]}/orders`);
    const body = (await res.json()) as unknown;
    const list = Array.isArray(body) ? body : ((body as { orders?: unknown[] }).orders ?? []);
    expected += perCustomer.get(c)!;
    found += list.length;
  }
  return { customersChecked: sample.length, expected, found, ok: expected === found };
}
