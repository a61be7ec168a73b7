/** The benchmark's table: metric, value, bar, result — and the rows each phase contributes. */
import type { runE2eBench } from "./e2e.ts";
import type { RpcResult } from "./rpc.ts";

export interface Row {
  metric: string;
  value: string;
  bar: string;
  /** "pass" / "fail" against the bar, "info" without one, "skip" when not measured. */
  result: "pass" | "fail" | "info" | "skip";
}

export function row(metric: string, value: string, bar = "", pass?: boolean): Row {
  return { metric, value, bar: bar || "—", result: pass === undefined ? "info" : pass ? "pass" : "fail" };
}

export function formatTable(rows: readonly Row[]): string {
  const head: Row = { metric: "metric", value: "value", bar: "bar", result: "result" as never };
  const all = [head, ...rows];
  const w = (k: keyof Row) => Math.max(...all.map((r) => r[k].length));
  const widths = { metric: w("metric"), value: w("value"), bar: w("bar"), result: w("result") };
  const line = (r: Row) => `| ${r.metric.padEnd(widths.metric)} | ${r.value.padStart(widths.value)} | ${r.bar.padEnd(widths.bar)} | ${r.result.padEnd(widths.result)} |`;
  const sep = `|${"-".repeat(widths.metric + 2)}|${"-".repeat(widths.value + 1)}:|${"-".repeat(widths.bar + 2)}|${"-".repeat(widths.result + 2)}|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}

const round = (x: number) => Math.round(x * 100) / 100;
const fmt = (x: number | null | undefined, unit: string) => (x === null || x === undefined || !Number.isFinite(x) ? "n/a" : `${x.toLocaleString("en-US")} ${unit}`);

export function rpcRows(r: RpcResult): Row[] {
  const c = r.catalog.usPerCall;
  const t = r.transportOnly.usPerCall;
  return [
    row("RPC GetProduct (a) platform in-process client", fmt(c.local, "µs/call")),
    row("RPC GetProduct (b) Connect router transport", fmt(c.routerTransport, "µs/call")),
    row("RPC GetProduct (c) plain function, same query", fmt(c.plainFunction, "µs/call")),
    row("RPC GetProduct (d) service impl called directly", fmt(c.implDirect, "µs/call")),
    row("RPC GetProduct: router / in-process, whole call incl. the query", `${r.catalog.ratioRouterOverLocal}×`),
    row("RPC GetProduct: transport overhead (a−d) vs (b−d)", `${fmt(round(c.local! - c.implDirect!), "µs")} vs ${fmt(round(c.routerTransport! - c.implDirect!), "µs")}`),
    row("RPC call cost (stub handler): in-process transport", fmt(t.local, "µs/call")),
    row("RPC call cost (stub handler): createRouterTransport", fmt(t.routerTransport, "µs/call")),
    row("RPC call cost (stub handler): plain function call", fmt(t.plainFunction, "µs/call")),
    // The bar is on the cost of the call itself (PRODUCT.md: router ~50 µs, a function ~0.1 µs);
    // with a real handler the handler's own cost (d) is the same in every way and dilutes the ratio.
    row("RPC co-located call: createRouterTransport / in-process", `${r.transportOnly.ratioRouterOverLocal}×`, "≥ 20×", r.transportOnly.ratioRouterOverLocal >= 20),
  ];
}

type E2e = Awaited<ReturnType<typeof runE2eBench>>;

/** The bars of an end-to-end phase (PRODUCT.md for embedded; the Postgres topologies' own). */
export interface E2eBars {
  /** Saturation orders/s, accepted and end to end. */
  ordersPerSec: number;
  /** Fixed rate: 202 → read model p99, ms. */
  readModelP99Ms: number;
  /** Fixed rate: relay lag (orders) p99, ms. */
  relayP99Ms: number;
}

export const EMBEDDED_BARS: E2eBars = { ordersPerSec: 5000, readModelP99Ms: 10, relayP99Ms: 5 };

/** Bars of the optional steps (issues 4 and 5); absent: the figure is reported without one. */
export interface StepBars {
  /** Saga: confirmed orders/s at saturation, and 202 → CONFIRMED p99 at `rate` orders/s. */
  saga?: { confirmedPerSec: number; p99Ms: number; rate: number };
  /** Replay of the order-history read model, events/s. */
  replayEventsPerSec?: number;
  /** Change data capture, commit → consumer p99 at `rate` changes/s. */
  cdc?: { p99Ms: number; rate: number };
}

/** Transactions per accepted order over the step, and how many bodies shared a COMMIT (group commit). */
function commitsPerOrder(step: E2e["saturation"]): string {
  const all = Object.values(step.commits);
  const commits = all.reduce((a, c) => a + c.commits, 0);
  const bodies = all.reduce((a, c) => a + c.bodies, 0);
  if (step.accepted === 0 || commits === 0) return "n/a";
  return `${round(commits / step.accepted)} / ${round(bodies / commits)}`;
}

/**
 * Rows of an end-to-end phase; `prefix` names the phase in every row. Without `bars` (the full
 * system: its bars are the saga's) every figure is reported as information.
 */
export function e2eRows(e: E2e, bars: E2eBars | undefined, prefix = ""): Row[] {
  const s = e.saturation;
  const f = e.fixedRate;
  const p = prefix ? `${prefix}: ` : "";
  const lagBar = (x: number | null, bar: number | undefined) => (x === null || bar === undefined ? undefined : x <= bar);
  const flag = (overflow: boolean) => (overflow ? " (≥, overflow)" : "");
  const tput = bars ? `≥ ${bars.ordersPerSec.toLocaleString("en-US")}` : "";
  const atLeast = (x: number) => (bars ? x >= bars.ordersPerSec : undefined);
  const atMost = (bar: number | undefined) => (bar === undefined ? "" : `≤ ${bar} ms`);
  const c = s.cpuWhileLoading;
  const services = c.postgresCores === null ? "" : ` / Postgres ${c.postgresCores} / NATS ${c.natsCores}`;
  const byProcess = Object.keys(c.serverCoresByProcess).length > 1 ? ` (${Object.entries(c.serverCoresByProcess).map(([n, v]) => `${n} ${v ?? "n/a"}`).join(", ")})` : "";
  return [
    row(
      `${p}Saturation: accepted orders/s (${s.clients} clients, ${s.seconds} s)`,
      `${fmt(s.acceptedPerSec, "orders/s")}${s.throttled > 0 ? ` (${s.throttled.toLocaleString("en-US")} refused as overloaded, 429)` : ""}`,
      tput,
      atLeast(s.acceptedPerSec),
    ),
    s.caughtUp
      ? row(`${p}Saturation: end-to-end orders/s (until read model caught up)`, fmt(s.endToEndPerSec, "orders/s"), tput, atLeast(s.endToEndPerSec))
      : row(`${p}Saturation: end-to-end orders/s (until read model caught up)`, `< ${fmt(s.endToEndPerSec, "orders/s")} (not caught up)`, tput, bars ? false : undefined),
    row(`${p}Saturation: read model caught up after`, s.caughtUp ? fmt(s.caughtUpAfterSec, "s") : `not after ${fmt(s.caughtUpAfterSec, "s")}: ${s.notCaughtUp}`),
    row(`${p}Saturation: client HTTP p50 / p99`, `${fmt(s.client.p50Ms, "ms")} / ${fmt(s.client.p99Ms, "ms")}`),
    row(
      `${p}Saturation: CPU server${byProcess ? "s" : ""} / load gen${services ? " / Postgres / NATS" : ""} / other processes`,
      `${c.serverCores ?? "n/a"}${byProcess} / ${c.benchCores}${services ? ` / ${c.postgresCores} / ${c.natsCores}` : ""} / ${c.otherCores ?? "n/a"} cores`,
    ),
    row(`${p}Saturation: COMMITs per order, bodies per COMMIT (all modules)`, commitsPerOrder(s)),
    row(`${p}Saturation: server CPU per order (load and catch-up)${services ? ", + Postgres and NATS" : ""}`, cpuMs(s.cpuPerOrder)),
    row(
      `${p}Fixed rate: accepted/s, send to last reply (target ${f.targetRate}/s)`,
      fmt(f.acceptedPerSec, "orders/s") + (f.acceptedPerSec < 0.95 * f.targetRate ? " (server fell behind)" : "") + (f.notSettled ? " (not settled 120 s after: lag figures incomplete)" : ""),
    ),
    row(`${p}Fixed rate: 202 → read model p50`, fmt(f.readModelLag.p50Ms, "ms") + flag(f.readModelLag.overflow)),
    row(`${p}Fixed rate: 202 → read model p99`, fmt(f.readModelLag.p99Ms, "ms") + flag(f.readModelLag.overflow), atMost(bars?.readModelP99Ms), lagBar(f.readModelLag.p99Ms, bars?.readModelP99Ms)),
    row(`${p}Fixed rate: relay lag (orders) p50`, fmt(f.relayLag.p50Ms, "ms") + flag(f.relayLag.overflow)),
    row(`${p}Fixed rate: relay lag (orders) p99`, fmt(f.relayLag.p99Ms, "ms") + flag(f.relayLag.overflow), atMost(bars?.relayP99Ms), lagBar(f.relayLag.p99Ms, bars?.relayP99Ms)),
    row(`${p}Fixed rate: client HTTP p50 / p99`, `${fmt(f.client.p50Ms, "ms")} / ${fmt(f.client.p99Ms, "ms")}`),
    row(`${p}Fixed rate: server CPU per order (load and settling)${services ? ", + Postgres and NATS" : ""}`, cpuMs(f.cpuPerOrder)),
    row(`${p}Read model holds every accepted order (sample)`, `${e.readModelCheck.found}/${e.readModelCheck.expected}`, "all", e.readModelCheck.ok),
  ];
}

const cpuMs = (c: { serverMs: number | null; withServicesMs: number | null }) => fmt(c.serverMs, "ms") + (c.withServicesMs === null ? "" : `, ${fmt(c.withServicesMs, "ms")}`);
const ms = (f: { p50Ms: number | null; p99Ms: number | null }) => `${fmt(f.p50Ms, "ms")} / ${fmt(f.p99Ms, "ms")}`;
const failed = (x: object | undefined): x is { stepError: string } => x !== undefined && "stepError" in x;

/** Rows of the saga figures (issue 4): none when the phase did not follow its orders. */
export function sagaRows(e: E2e, bars: StepBars, prefix = ""): Row[] {
  const p = prefix ? `${prefix}: ` : "";
  const sat = e.saturation.saga;
  if (!sat) return [];
  const rows: Row[] = [];
  const b = bars.saga;
  if (failed(e.sagaRate)) rows.push(row(`${p}Saga fixed-rate step`, `error: ${e.sagaRate.stepError.split("\n")[0]}`, "—", false));
  else {
    const step = e.sagaRate ?? e.fixedRate;
    const f = step.saga!;
    const at = `${p}Saga at ${step.targetRate}/s`;
    const notAll = f.complete ? "" : ` (${f.orders - f.confirmed} of ${f.orders} not CONFIRMED)`;
    const barHere = b && b.rate === step.targetRate ? b : undefined;
    if (e.sagaRate) {
      rows.push(
        row(
          `${at}: accepted/s, send to last reply`,
          fmt(step.acceptedPerSec, "orders/s") + (step.acceptedPerSec < 0.95 * step.targetRate ? " (server fell behind)" : "") + (step.notSettled ? " (not settled 120 s after)" : "") + (e.sagaRate.settledBefore ? "" : " (not settled before)"),
        ),
      );
    }
    rows.push(
      row(`${at}: 202 → CONFIRMED p50 / p99 (server stamps)`, ms(f.placedToConfirmed) + notAll, barHere ? `p99 ≤ ${barHere.p99Ms} ms` : "", barHere && (f.placedToConfirmed.p99Ms === null ? false : f.complete && f.placedToConfirmed.p99Ms <= barHere.p99Ms)),
      row(`${at}: bench send → CONFIRMED p50 / p99 (upper bound)`, ms(f.sendToConfirmed)),
    );
  }
  const tput = b ? `≥ ${b.confirmedPerSec.toLocaleString("en-US")}` : "";
  const after = sat.lastConfirmedAfterSec === null ? "" : ` (last after ${fmt(sat.lastConfirmedAfterSec, "s")})`;
  rows.push(
    sat.complete
      ? row(`${p}Saga: confirmed orders/s (saturation, until the last CONFIRMED)`, fmt(sat.confirmedPerSec, "orders/s") + after, tput, b && sat.confirmedPerSec !== null ? sat.confirmedPerSec >= b.confirmedPerSec : undefined)
      : row(`${p}Saga: confirmed orders/s (saturation, until the last CONFIRMED)`, `${fmt(sat.confirmedPerSec, "orders/s")}${after}, ${sat.orders - sat.confirmed} of ${sat.orders} not CONFIRMED`, tput, b ? false : undefined),
  );
  const steps = [e.fixedRate.saga, sat, failed(e.sagaRate) ? undefined : e.sagaRate?.saga].filter((x) => x !== undefined);
  const orders = steps.reduce((a, f) => a + f.orders, 0);
  const confirmed = steps.reduce((a, f) => a + f.confirmed, 0);
  rows.push(row(`${p}Saga: accepted orders that ended CONFIRMED`, `${confirmed.toLocaleString("en-US")}/${orders.toLocaleString("en-US")}`, "all", confirmed === orders));
  return rows;
}

/** Rows of the read-model replay (issue 5): none when it did not run. */
export function replayRows(e: E2e, bars: StepBars, prefix = ""): Row[] {
  const p = prefix ? `${prefix}: ` : "";
  const r = e.replay;
  if (!r) return [];
  if (failed(r)) return [row(`${p}Replay of order-history`, `error: ${r.stepError.split("\n")[0]}`, "—", false)];
  const x = r;
  const bar = bars.replayEventsPerSec;
  const what = `${fmt(x.events, "events")} in ${fmt(x.wallSec, "s")}${x.liveProcessed === null ? "" : ` (live consumer: ${x.liveProcessed.toLocaleString("en-US")})`}`;
  const rows = [
    row(
      `${p}Replay order-history: events/s (whole replay, system idle)`,
      x.finished ? `${fmt(x.eventsPerSec, "events/s")}, ${what}` : `not finished (${x.error}): ${fmt(x.eventsPerSec, "events/s")} so far, ${what}`,
      bar ? `≥ ${bar.toLocaleString("en-US")}` : "",
      bar ? x.finished && x.eventsPerSec !== null && x.eventsPerSec >= bar : undefined,
    ),
  ];
  if (x.serverEventsPerSec !== null) rows.push(row(`${p}Replay order-history: events/s by the server's duration (to before the swap)`, `${fmt(x.serverEventsPerSec, "events/s")} (${fmt(round(x.serverDurationMs! / 1000), "s")})`));
  if (x.readModelCheck) rows.push(row(`${p}Replay: read model after the swap holds every accepted order (sample)`, `${x.readModelCheck.found}/${x.readModelCheck.expected}`, "all", x.readModelCheck.ok));
  return rows;
}

/** Rows of change data capture (issue 5): none when it did not run. */
export function cdcRows(e: E2e, bars: StepBars, prefix = ""): Row[] {
  const p = prefix ? `${prefix}: ` : "";
  const c = e.cdc;
  if (!c) return [];
  if (failed(c)) return [row(`${p}CDC (catalog.products → analytics)`, `error: ${c.stepError.split("\n")[0]}`, "—", false)];
  const b = bars.cdc && bars.cdc.rate === c.targetRate ? bars.cdc : undefined;
  const f = c.commitToConsumer;
  const incomplete = c.allConsumed ? "" : ` (${c.consumed} of ${c.accepted} changes consumed)`;
  const overflow = f.overflow ? " (≥, overflow)" : "";
  return [
    row(
      `${p}CDC at ${c.targetRate} changes/s: commit → consumer p50 / p99 (catalog.products → analytics)`,
      ms(f) + overflow + incomplete,
      b ? `p99 ≤ ${b.p99Ms} ms` : "",
      b ? f.p99Ms !== null && c.allConsumed && !f.overflow && f.p99Ms <= b.p99Ms : undefined,
    ),
    row(`${p}CDC baseline, same updates through catalog's outbox: commit → order-history p50 / p99`, ms(c.outboxToProjection)),
    row(
      `${p}CDC: updates accepted/s (target ${c.targetRate}/s), changes consumed`,
      `${fmt(c.acceptedPerSec, "updates/s")}${c.acceptedPerSec < 0.95 * c.targetRate ? " (server fell behind)" : ""}, ${c.consumed.toLocaleString("en-US")}/${c.accepted.toLocaleString("en-US")}`,
    ),
  ];
}
