/**
 * Phase 1: what a co-located RPC call costs, in this process, for the same message
 * (`CatalogService.GetProduct` of one existing product), three ways:
 *  (a) local — the platform's in-process client (`platform.client(CatalogService)`), including
 *      what the platform adds to every call: RPC metrics, deadline, request/response copies;
 *  (b) routerTransport — Connect's `createRouterTransport` serving the same implementation: the
 *      whole Connect protocol (binary serialisation, headers, envelopes) without a socket;
 *  (c) plainFunction — the same query as a function call (`getProduct(storage, id)`).
 * (d) implDirect, the service implementation called directly (proto in and out, no transport),
 * separates the handler's own cost from the transport's.
 *
 * The same three ways are then timed against a stub service that answers a constant
 * (`stub-module.ts`): with no query in the way, that is what each transport itself costs.
 */
import { createClient, createRouterTransport, type HandlerContext } from "@connectrpc/connect";
import { CatalogService } from "../gen/catalog/v1/catalog_pb.ts";
import catalog from "../modules/catalog/index.ts";
import { getProduct } from "../modules/catalog/queries/get-product.ts";
import { catalogRpc } from "../modules/catalog/rpc.ts";
import { bootModules } from "../test/support/platform.ts";
import { stubImpl, stubModule, stubProduct } from "./stub-module.ts";
import { median, progress, round } from "./util.ts";

export interface WaysResult {
  /** Median over rounds of the mean cost of one call, in µs. */
  usPerCall: Record<string, number>;
  /** Every round's mean per way, µs, to judge the noise. */
  roundsUs: Record<string, number[]>;
}

export interface RpcResult {
  callsPerWay: number;
  rounds: number;
  catalog: WaysResult & { ratioRouterOverLocal: number; ratioLocalOverPlain: number };
  transportOnly: WaysResult & { ratioRouterOverLocal: number };
}

type Way = { name: string; call: () => unknown };
type Opts = { calls: number; warmup: number; rounds: number };

async function timeAsync(call: () => unknown, n: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < n; i++) await call();
  return performance.now() - start;
}

/** Warms every way up, then times interleaved rounds (noise from the shared cores hits every way alike). */
async function timeWays(label: string, ways: Way[], opts: Opts): Promise<WaysResult> {
  progress(`rpc/${label}: warming up (${opts.warmup} calls per way)`);
  for (const w of ways) await timeAsync(w.call, opts.warmup);
  const per = Math.max(1, Math.floor(opts.calls / opts.rounds));
  progress(`rpc/${label}: timing ${opts.rounds} rounds x ${per} sequential awaited calls per way (${ways.map((w) => w.name).join(", ")})`);
  const roundsUs: Record<string, number[]> = Object.fromEntries(ways.map((w) => [w.name, []]));
  for (let r = 0; r < opts.rounds; r++) {
    for (const w of r % 2 === 0 ? ways : [...ways].reverse()) roundsUs[w.name]!.push(((await timeAsync(w.call, per)) * 1000) / per);
  }
  return {
    usPerCall: Object.fromEntries(ways.map((w) => [w.name, round(median(roundsUs[w.name]!))])),
    roundsUs: Object.fromEntries(Object.entries(roundsUs).map(([k, v]) => [k, v.map((x) => round(x))])),
  };
}

async function catalogWays(opts: Opts) {
  const t = await bootModules([catalog]);
  try {
    const storage = t.platform.storage("catalog");
    const local = t.platform.client(CatalogService);
    const impl = catalogRpc(storage);
    const router = createClient(CatalogService, createRouterTransport((r) => r.service(CatalogService, impl)));
    const { product } = await local.createProduct({ sku: "BENCH-RPC-1", name: "Kopi Luwak 250 g", priceCents: 12_500n });
    const id = product!.id;
    // Every way must read the same row, or the comparison means nothing.
    const names = [(await local.getProduct({ id })).product?.name, (await router.getProduct({ id })).product?.name, (await getProduct(storage, id)).name];
    if (new Set(names).size !== 1) throw new Error(`the three ways disagree: ${names.join(", ")}`);
    const ctx = {} as HandlerContext; // catalog's getProduct does not read its context
    const r = await timeWays("catalog", [
      { name: "local", call: () => local.getProduct({ id }) },
      { name: "routerTransport", call: () => router.getProduct({ id }) },
      { name: "plainFunction", call: () => getProduct(storage, id) },
      { name: "implDirect", call: () => impl.getProduct({ id } as never, ctx) },
    ], opts);
    const us = r.usPerCall;
    return { ...r, ratioRouterOverLocal: round(us.routerTransport! / us.local!, 1), ratioLocalOverPlain: round(us.local! / us.plainFunction!, 1) };
  } finally {
    await t.dispose();
  }
}

async function transportOnlyWays(opts: Opts) {
  const t = await bootModules([stubModule]);
  try {
    const local = t.platform.client(CatalogService);
    const router = createClient(CatalogService, createRouterTransport((r) => r.service(CatalogService, stubImpl)));
    const id = stubProduct("").id;
    const r = await timeWays("transport-only", [
      { name: "local", call: () => local.getProduct({ id }) },
      { name: "routerTransport", call: () => router.getProduct({ id }) },
      { name: "plainFunction", call: () => stubProduct(id) },
    ], opts);
    return { ...r, ratioRouterOverLocal: round(r.usPerCall.routerTransport! / r.usPerCall.local!, 1) };
  } finally {
    await t.dispose();
  }
}

export async function runRpcBench(opts: Opts): Promise<RpcResult> {
  const catalogResult = await catalogWays(opts);
  const transportOnly = await transportOnlyWays(opts);
  const per = Math.max(1, Math.floor(opts.calls / opts.rounds));
  return { callsPerWay: per * opts.rounds, rounds: opts.rounds, catalog: catalogResult, transportOnly };
}
