/**
 * Change data capture on Postgres, commit to consumer, the way users get it: catalog's `products`
 * table is captured from the WAL by the process hosting catalog (platform/cdc, ADR 0011), each
 * change goes on the bus as a `selaras.v1.ChangeEvent`, and analytics' `sales` subscription
 * consumes it. The bench updates products over REST (`PUT /api/v1/products/{id}`, a new price
 * each time, so every request commits one row change) in an open loop at a fixed rate, while
 * nothing else runs, and reads the latency from the consumer's own histogram:
 * `selaras_consumer_lag_seconds{consumer="analytics.sales"}` observes, after the consumer's
 * commit, `Date.now()` minus the event's `occurredAt` — for a captured change, the transaction's
 * commit time from the WAL (whole ms, rounded down). Same-run baseline: the same updates reach
 * order-history through catalog's outbox (`ProductUpdated`), observed by the projection's
 * histogram over the same window.
 */
import postgres from "postgres";
import { BENCH_POSTGRES } from "./infra.ts";
import { openLoop, type OrderBody } from "./load.ts";
import { CpuWindow, histogramFigures, loadFigures, PROJECTION, settled, until, waitUntil } from "./metrics.ts";
import { value, type Sample } from "./prom.ts";
import type { System } from "./system.ts";
import { progress, round, sleep } from "./util.ts";

/** analytics' subscription, fed by the capture of catalog.products. */
export const CDC_CONSUMER = "analytics.sales";
const processed = (s: Sample[]) => value(s, "selaras_events_consumed_total", { consumer: CDC_CONSUMER, result: "processed" }) ?? 0;
const published = (s: Sample[]) => value(s, "selaras_cdc_events_published_total", { module: "catalog" }) ?? 0;

/** The capture slots of this run (`<prefix>_…_cdc`) and whether a reader streams each. */
async function slots(prefix: string): Promise<Array<{ name: string; active: boolean }>> {
  const sql = postgres(BENCH_POSTGRES, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    return await sql<{ name: string; active: boolean }[]>`SELECT slot_name AS name, active FROM pg_replication_slots WHERE slot_name LIKE ${`${prefix}\\_%`}`;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Resolves once `done` holds for a fresh scrape (polled every 50 ms); throws after `timeoutMs`. */
async function scrapeUntil(system: System, what: string, done: (s: Sample[]) => boolean, timeoutMs: number): Promise<Sample[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const s = await system.scrape();
    if (done(s)) return s;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * The CDC step on a Postgres topology: waits until the capture streams (its slot active and one
 * probe update consumed by analytics), then `rate` updates/s for `seconds`, then until analytics
 * has consumed every change and the system has settled.
 */
export async function cdcStep(system: System, opts: { label: string; products: readonly string[]; rate: number; seconds: number; pollMs: number }) {
  const { label } = opts;
  if (!system.prefix) throw new Error("change data capture is measured on Postgres topologies only");
  const catalog = system.urlOf("catalog");
  const put = (id: string, priceCents: number) =>
    fetch(`${catalog}/api/v1/products/${id}`, { method: "PUT", body: JSON.stringify({ priceCents }), headers: { "content-type": "application/json" } });

  // The slot is created in the background after start-up: wait for a reader on it, then for one change to arrive.
  const deadline = performance.now() + 60_000;
  let seen: Array<{ name: string; active: boolean }> = [];
  while (!(seen = await slots(system.prefix)).some((s) => s.active && s.name.includes("_catalog_"))) {
    if (performance.now() > deadline) throw new Error(`no active capture slot of catalog after 60 s (slots of this run: ${seen.map((s) => `${s.name} active=${s.active}`).join(", ") || "none"})`);
    await sleep(250);
  }
  // Prices from 10,000,000 up: never a seed price, never repeated, so every request changes its row.
  let price = 10_000_000;
  const probeFrom = processed(await system.scrape());
  const probe = await put(opts.products[0]!, price++);
  if (probe.status !== 200) throw new Error(`PUT /api/v1/products/{id} answered ${probe.status}: ${(await probe.text()).slice(0, 200)}`);
  await probe.text();
  await scrapeUntil(system, `${CDC_CONSUMER} to consume a captured change`, (s) => processed(s) > probeFrom, 30_000);
  await until(system, "the system to settle before the CDC step", settled, 60_000, opts.pollMs);

  const total = Math.round(opts.rate * opts.seconds);
  const bodies: OrderBody[] = Array.from({ length: total }, (_, i) => ({
    customer: 0,
    url: `${catalog}/api/v1/products/${opts.products[i % opts.products.length]}`,
    json: JSON.stringify({ priceCents: price + i }),
  }));
  progress(`${label}/cdc: open loop of ${opts.rate} product updates/s for ${opts.seconds} s (catalog.products captured → ${CDC_CONSUMER})`);
  const before = await system.scrape();
  const cpu = await CpuWindow.start(system);
  const start = performance.now();
  const load = await openLoop({ url: `${catalog}/api/v1/products`, rate: opts.rate, seconds: opts.seconds, bodies, method: "PUT", okStatus: 200 });
  if (load.accepted === 0) throw new Error(`no product update was accepted; first errors: ${load.errors.join(" | ")}`);
  const want = processed(before) + load.accepted;
  const consumed = await waitUntil(system, (s) => processed(s) >= want && settled(s), 120_000, opts.pollMs);
  if (consumed.behind) progress(`${label}/cdc: WARNING ${CDC_CONSUMER} had not consumed every change 120 s after the load (${consumed.behind})`);
  const after = await system.scrape();
  const capture = histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: CDC_CONSUMER });
  return {
    targetRate: opts.rate,
    consumer: CDC_CONSUMER,
    ...loadFigures(load),
    /** Changes analytics consumed and the capture published over the step (the probe excluded). */
    consumed: processed(after) - processed(before),
    capturePublished: published(after) - published(before),
    allConsumed: consumed.behind === undefined,
    notConsumed: consumed.behind,
    consumedAfterLoadSec: consumed.at === undefined ? null : round((consumed.at - start) / 1000 - load.seconds),
    /** Commit (WAL commit time) → analytics' commit: the CDC figure. */
    commitToConsumer: capture,
    /** Baseline, same updates: catalog's outbox commit → order-history's commit (ProductUpdated through the relay). */
    outboxToProjection: histogramFigures(before, after, "selaras_consumer_lag_seconds", { consumer: PROJECTION }),
    catalogRelayLag: histogramFigures(before, after, "selaras_relay_lag_seconds", { module: "catalog" }),
    slotLagBytesAfter: value(after, "selaras_cdc_slot_lag_bytes") ?? null,
    cpu: await cpu.read(),
  };
}

export type CdcFigures = Awaited<ReturnType<typeof cdcStep>>;
