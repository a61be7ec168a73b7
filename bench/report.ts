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

/** Transactions per accepted order over the step, and how many bodies shared a COMMIT (group commit). */
function commitsPerOrder(step: E2e["saturation"]): string {
  const all = Object.values(step.commits);
  const commits = all.reduce((a, c) => a + c.commits, 0);
  const bodies = all.reduce((a, c) => a + c.bodies, 0);
  if (step.accepted === 0 || commits === 0) return "n/a";
  return `${round(commits / step.accepted)} / ${round(bodies / commits)}`;
}

/** Rows of an end-to-end phase; `prefix` names the phase in every row ("" for the embedded one). */
export function e2eRows(e: E2e, bars: E2eBars = EMBEDDED_BARS, prefix = ""): Row[] {
  const s = e.saturation;
  const f = e.fixedRate;
  const p = prefix ? `${prefix}: ` : "";
  const lagBar = (x: number | null, bar: number) => (x === null ? undefined : x <= bar);
  const flag = (overflow: boolean) => (overflow ? " (≥, overflow)" : "");
  const tput = `≥ ${bars.ordersPerSec.toLocaleString("en-US")}`;
  const c = s.cpuWhileLoading;
  const services = c.postgresCores === null ? "" : ` / Postgres ${c.postgresCores} / NATS ${c.natsCores}`;
  const byProcess = Object.keys(c.serverCoresByProcess).length > 1 ? ` (${Object.entries(c.serverCoresByProcess).map(([n, v]) => `${n} ${v ?? "n/a"}`).join(", ")})` : "";
  return [
    row(`${p}Saturation: accepted orders/s (${s.clients} clients, ${s.seconds} s)`, fmt(s.acceptedPerSec, "orders/s"), tput, s.acceptedPerSec >= bars.ordersPerSec),
    s.caughtUp
      ? row(`${p}Saturation: end-to-end orders/s (until read model caught up)`, fmt(s.endToEndPerSec, "orders/s"), tput, s.endToEndPerSec >= bars.ordersPerSec)
      : row(`${p}Saturation: end-to-end orders/s (until read model caught up)`, `< ${fmt(s.endToEndPerSec, "orders/s")} (not caught up)`, tput, false),
    row(`${p}Saturation: read model caught up after`, s.caughtUp ? fmt(s.caughtUpAfterSec, "s") : `not after ${fmt(s.caughtUpAfterSec, "s")}: ${s.notCaughtUp}`),
    row(`${p}Saturation: client HTTP p50 / p99`, `${fmt(s.client.p50Ms, "ms")} / ${fmt(s.client.p99Ms, "ms")}`),
    row(
      `${p}Saturation: CPU server${byProcess ? "s" : ""} / load gen${services ? " / Postgres / NATS" : ""} / other processes`,
      `${c.serverCores ?? "n/a"}${byProcess} / ${c.benchCores}${services ? ` / ${c.postgresCores} / ${c.natsCores}` : ""} / ${c.otherCores ?? "n/a"} cores`,
    ),
    row(`${p}Saturation: COMMITs per order, bodies per COMMIT (all modules)`, commitsPerOrder(s)),
    row(
      `${p}Fixed rate: accepted/s, send to last reply (target ${f.targetRate}/s)`,
      fmt(f.acceptedPerSec, "orders/s") + (f.acceptedPerSec < 0.95 * f.targetRate ? " (server fell behind)" : "") + (f.notSettled ? " (not settled 120 s after: lag figures incomplete)" : ""),
    ),
    row(`${p}Fixed rate: 202 → read model p50`, fmt(f.readModelLag.p50Ms, "ms") + flag(f.readModelLag.overflow)),
    row(`${p}Fixed rate: 202 → read model p99`, fmt(f.readModelLag.p99Ms, "ms") + flag(f.readModelLag.overflow), `≤ ${bars.readModelP99Ms} ms`, lagBar(f.readModelLag.p99Ms, bars.readModelP99Ms)),
    row(`${p}Fixed rate: relay lag (orders) p50`, fmt(f.relayLag.p50Ms, "ms") + flag(f.relayLag.overflow)),
    row(`${p}Fixed rate: relay lag (orders) p99`, fmt(f.relayLag.p99Ms, "ms") + flag(f.relayLag.overflow), `≤ ${bars.relayP99Ms} ms`, lagBar(f.relayLag.p99Ms, bars.relayP99Ms)),
    row(`${p}Fixed rate: client HTTP p50 / p99`, `${fmt(f.client.p50Ms, "ms")} / ${fmt(f.client.p99Ms, "ms")}`),
    row(`${p}Read model holds every accepted order (sample)`, `${e.readModelCheck.found}/${e.readModelCheck.expected}`, "all", e.readModelCheck.ok),
  ];
}
