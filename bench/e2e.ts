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
 * Optional steps after those (each can be left out): every order of each step followed to
 * CONFIRMED (`saga.ts`), with a fixed-rate step of its own at the saga bar's rate; a timed replay
 * of the read model (`replay.ts`); change data capture commit → consumer on Postgres (`cdc.ts`).
 */
import { cpuPerOrder, CpuWindow, histogramFigures, loadFigures, PROJECTION, settledOf, until, waitUntil, type HistogramFigures } from "./metrics.ts";
import { value, type Sample } from "./prom.ts";
import { closedLoop, openLoop, type LoadResult } from "./load.ts";
import { cdcStep } from "./cdc.ts";
import { timeReplay } from "./replay.ts";
import { readOutcomes, sagaFigures } from "./saga.ts";
import { ONE_HOP_ENTRY } from "./one-hop.ts";
import { seed } from "./seed.ts";
import { startSystem, type System, type SystemKind } from "./system.ts";
import { progress, round } from "./util.ts";

export interface E2eOptions {
  root: string;
  /** Which topology runs (default embedded). */
  kind?: SystemKind;
  /**
   * Only the modules of one hop (`one-hop.ts`; issue 3's bar): no saga finishes there, so the
   * saga, replay and CDC steps are for the full system and must not be asked for.
   */
  oneHop?: boolean;
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
  /**
   * Follow every order to CONFIRMED (`saga.ts`); `rate`: the saga's fixed rate — a step of its own
   * after the others when it is not `rate` already. Undefined: no saga figures.
   */
  saga?: { rate: number };
  /** Time a replay of the order-history read model after the other steps (`replay.ts`). */
  replay?: { timeoutMs: number };
  /** Postgres topologies: change data capture commit → consumer at `rate` changes/s (`cdc.ts`). */
  cdc?: { rate: number };
}

/** How long to wait after the saturation load for the read model to catch up (then: not caught up). */
const CATCH_UP_TIMEOUT_MS = 180_000;

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

/**
 * Every hop's latency between two scrapes: each consumer's (relay commit → consumer commit,
 * `selaras_consumer_lag_seconds`) and each module's relay (outbox commit → published,
 * `selaras_relay_lag_seconds`); those without observations left out.
 */
function hopFigures(before: Sample[], after: Sample[]) {
  const of = (name: string, label: string) => {
    const out: Record<string, HistogramFigures> = {};
    for (const key of new Set(after.filter((s) => s.name === `${name}_count`).map((s) => s.labels[label]!))) {
      const f = histogramFigures(before, after, name, { [label]: key });
      if (f.observations > 0) out[key] = f;
    }
    return out;
  };
  return { consumers: of("selaras_consumer_lag_seconds", "consumer"), relays: of("selaras_relay_lag_seconds", "module") };
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
  const oneHop = opts.oneHop ?? false;
  if (oneHop && (opts.saga || opts.replay || opts.cdc)) throw new Error("the saga, replay and CDC steps need the full system, not one hop");
  const scope = oneHop ? ", one hop" : "";
  const entry = `bun ${oneHop ? ONE_HOP_ENTRY : "main.ts"}`;
  progress(`${label}: starting the ${kind} topology${kind === "embedded" ? ` (\`${entry}\` on a fresh data dir${scope})` : ` (${kind === "split" ? "config/split.json" : "config/single-postgres.json"} on Postgres + NATS${scope})`}`);
  const server = await startSystem(kind, { root: opts.root, modules: opts.modules, oneHop, profileDir: opts.profileDir, serverSets: opts.serverSets });
  try {
    const settled = settledOf(server);
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
    // The saga figures follow every order of a step to CONFIRMED: read back once the step settled.
    const record = opts.saga !== undefined;
    const sagaOf = async (r: LoadResult, loadStartMs: number, step: string) => {
      if (!r.placed) return undefined;
      const t = performance.now();
      const outcomes = await readOutcomes(server.urlOf("orders"), r.placed.ids);
      const f = sagaFigures(r.placed, outcomes, loadStartMs);
      progress(`${label}/${step}: saga — ${f.confirmed}/${f.orders} orders CONFIRMED, 202 → CONFIRMED p50 ${f.placedToConfirmed.p50Ms} / p99 ${f.placedToConfirmed.p99Ms} ms (read back in ${round((performance.now() - t) / 1000)} s)`);
      return f;
    };

    progress(`${label}/warm-up: ${opts.warmupSeconds} s, 16 closed-loop clients`);
    count(await closedLoop({ url, clients: 16, seconds: opts.warmupSeconds, bodies: data.bodies }));
    await until(server, "the warm-up to settle", settled, 120_000, pollMs);

    /** An open loop at `rate` orders/s for --rate-seconds, then until settled. */
    const fixedRateStep = async (rate: number, step: string) => {
      progress(`${label}/${step}: open loop at ${rate} orders/s for ${opts.rateSeconds} s`);
      const before = await server.scrape();
      const cpu = await CpuWindow.start(server);
      const fixedStart = performance.now();
      const startMs = Date.now();
      const fixed = await openLoop({ url, rate, seconds: opts.rateSeconds, bodies: data.bodies, record });
      count(fixed);
      const fixedSettled = await waitUntil(server, settled, 120_000, pollMs);
      if (fixedSettled.behind) progress(`${label}/${step}: WARNING not settled after 120 s (${fixedSettled.behind}); figures cover what was done by then`);
      const after = await server.scrape();
      const cpuFixed = await cpu.read();
      const figures = {
        targetRate: rate,
        ...loadFigures(fixed),
        settledAfterLoadSec: fixedSettled.at === undefined ? null : round((fixedSettled.at - fixedStart) / 1000 - fixed.seconds),
        notSettled: fixedSettled.behind,
        readModelLag: histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: PROJECTION }),
        relayLag: histogramFigures(before, after, "selaras_relay_lag_seconds", { module: "orders" }),
        cpu: cpuFixed,
        cpuPerOrder: cpuPerOrder([cpuFixed], fixed.accepted),
        commits: commitFigures(before, after),
        consumers: consumerFigures(before, after),
        rpc: rpcFigures(before, after),
        hops: hopFigures(before, after),
      };
      return { ...figures, saga: await sagaOf(fixed, startMs, step) };
    };

    const fixedRate = await fixedRateStep(opts.rate, "fixed-rate");

    progress(`${label}/saturation: ${opts.clients} closed-loop keep-alive clients for ${opts.saturationSeconds} s`);
    let before = await server.scrape();
    let cpu = await CpuWindow.start(server);
    const start = performance.now();
    const startMs = Date.now();
    const sat = await closedLoop({ url, clients: opts.clients, seconds: opts.saturationSeconds, bodies: data.bodies, record });
    count(sat);
    const cpuLoad = await cpu.read();
    const cpuCatch = await CpuWindow.start(server);
    progress(`${label}/saturation: ${sat.accepted} orders accepted; waiting for the read model to catch up`);
    const caught = await waitUntil(server, settled, CATCH_UP_TIMEOUT_MS, pollMs);
    // Not caught up in time: the end-to-end rate is below accepted / (time waited) — an upper bound.
    if (caught.behind) progress(`${label}/saturation: WARNING read model not caught up ${CATCH_UP_TIMEOUT_MS / 1000} s after the load (${caught.behind})`);
    let after = await server.scrape();
    const cpuCatchingUp = await cpuCatch.read();
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
      cpuCatchingUp,
      cpuPerOrder: cpuPerOrder([cpuLoad, cpuCatchingUp], sat.accepted),
      commits: commitFigures(before, after),
      consumers: consumerFigures(before, after),
      rpc: rpcFigures(before, after),
      saga: await sagaOf(sat, startMs, "saturation"),
    };

    const readModelCheck = await checkReadModel(server, data.customers, perCustomer);
    progress(`${label}: read model holds ${readModelCheck.found}/${readModelCheck.expected} orders of ${readModelCheck.customersChecked} sampled customers`);

    // The steps below come after the existing ones, so those keep the conditions they always had.
    // A step that fails is reported as failed (`stepError`); the phase's other figures are kept.
    const step = async <T>(name: string, body: () => Promise<T>): Promise<T | { stepError: string }> => {
      try {
        return await body();
      } catch (err) {
        progress(`${label}/${name}: FAILED — ${(err as Error).message}`);
        return { stepError: (err as Error).message };
      }
    };
    // A separate fixed-rate step at the saga bar's rate when the phase's own fixed rate is another one.
    const sagaRate =
      opts.saga && opts.saga.rate !== opts.rate
        ? await step("saga-rate", async () => {
            const before = await waitUntil(server, settled, 120_000, pollMs);
            return { settledBefore: before.at !== undefined, ...(await fixedRateStep(opts.saga!.rate, "saga-rate")) };
          })
        : undefined;
    const replay = opts.replay
      ? await step("replay", async () => {
          await until(server, "the system to settle before the replay", settled, 120_000, pollMs);
          const live = value(await server.scrape(), "selaras_events_consumed_total", { consumer: PROJECTION, result: "processed" }) ?? null;
          progress(`${label}/replay: rebuilding ${PROJECTION} (${live ?? "?"} events processed live) through POST /admin/v1/read-models/${PROJECTION}/replay`);
          const r = await timeReplay(server.urlOf("order-history"), PROJECTION, opts.replay!.timeoutMs);
          if (r.error) progress(`${label}/replay: ${r.finished ? "" : "NOT FINISHED — "}${r.error}`);
          progress(`${label}/replay: ${r.events} events in ${r.wallSec} s = ${r.eventsPerSec} events/s`);
          const check = r.finished ? await checkReadModel(server, data.customers, perCustomer) : undefined;
          return { ...r, liveProcessed: live, readModelCheck: check };
        })
      : undefined;
    const cdc =
      opts.cdc && kind !== "embedded"
        ? await step("cdc", () => cdcStep(server, { label, products: data.products, rate: opts.cdc!.rate, seconds: opts.rateSeconds, pollMs }))
        : undefined;

    return {
      topology: kind,
      oneHop,
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
      sagaRate,
      replay,
      cdc,
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
