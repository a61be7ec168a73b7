/**
 * Phase 1: what a co-located RPC call costs, three ways, in this process, for the same message:
 *  (a) the platform's in-process client (`platform.client(CatalogService)`), with the platform's
 *      real client interceptors (RPC metrics), deadline, and request/response copies;
 *  (b) Connect's `createRouterTransport` serving the same implementation — the full Connect
 *      protocol (binary serialisation, headers, envelope) without a socket;
 *  (c) a plain function call of the same query (`getProduct(storage, id)`).
 * Plus, for reading the figures, (d) the service implementation called directly (proto message in
 * and out, no transport), which shows what the transport itself adds on top of the handler.
 */
import { createClient, createRouterTransport, type HandlerContext } from "@connectrpc/connect";
import { rmSync } from "node:fs";
import { CatalogService } from "../gen/catalog/v1/catalog_pb.ts";
import catalog from "../modules/catalog/index.ts";
import { getProduct } from "../modules/catalog/queries/get-product.ts";
import { catalogRpc } from "../modules/catalog/rpc.ts";
import { bootModules } from "../test/support/platform.ts";
import { median, progress, round } from "./util.ts";

export interface RpcResult {
  calls: number;
  rounds: number;
  /** Median over rounds of the mean cost of one call, in µs. */
  usPerCall: { local: number; routerTransport: number; plainFunction: number; implDirect: number };
  /** Every round's mean, µs, per way, for judging the noise. */
  roundsUs: Record<string, number[]>;
  ratioRouterOverLocal: number;
  ratioLocalOverPlain: number;
}

type Way = { name: keyof RpcResult["usPerCall"]; call: () => unknown };

/** Sequential awaits of `n` calls; returns the total ms. */
async function timeAsync(call: () => unknown, n: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < n; i++) await call();
  return performance.now() - start;
}

export async function runRpcBench(opts: { calls: number; warmup: number; rounds: number }): Promise<RpcResult> {
  const t = await bootModules([catalog]);
  try {
    const storage = t.platform.storage("catalog");
    const local = t.platform.client(CatalogService);
    const impl = catalogRpc(storage);
    const router = createClient(CatalogService, createRouterTransport((r) => r.service(CatalogService, impl)));
    const { product } = await local.createProduct({ sku: "BENCH-RPC-1", name: "Kopi Luwak 250 g", priceCents: 12_500n });
    const id = product!.id;
    // Every way must read the same row, or the comparison means nothing.
    const names = [(await local.getProduct({ id })).product?.name, (await router.getProduct({ id })).product?.name, getProduct(storage, id).name];
    if (new Set(names).size !== 1) throw new Error(`the three ways disagree: ${names.join(", ")}`);

    const ctx = {} as HandlerContext; // catalog's getProduct does not read its context
    const ways: Way[] = [
      { name: "local", call: () => local.getProduct({ id }) },
      { name: "routerTransport", call: () => router.getProduct({ id }) },
      { name: "plainFunction", call: () => getProduct(storage, id) },
      { name: "implDirect", call: () => impl.getProduct({ id } as never, ctx) },
    ];
    progress(`rpc: warming up (${opts.warmup} calls per way)`);
    for (const w of ways) await timeAsync(w.call, opts.warmup);

    // Interleaved rounds, so a burst of noise from the shared cores hits every way alike.
    const per = Math.max(1, Math.floor(opts.calls / opts.rounds));
    const roundsUs: Record<string, number[]> = Object.fromEntries(ways.map((w) => [w.name, []]));
    progress(`rpc: timing ${opts.rounds} rounds x ${per} sequential calls per way`);
    for (let r = 0; r < opts.rounds; r++) {
      for (const w of r % 2 === 0 ? ways : [...ways].reverse()) {
        roundsUs[w.name]!.push(((await timeAsync(w.call, per)) * 1000) / per);
      }
    }
    const us = Object.fromEntries(ways.map((w) => [w.name, median(roundsUs[w.name]!)])) as RpcResult["usPerCall"];
    return {
      calls: per * opts.rounds,
      rounds: opts.rounds,
      usPerCall: { local: round(us.local), routerTransport: round(us.routerTransport), plainFunction: round(us.plainFunction), implDirect: round(us.implDirect) },
      roundsUs: Object.fromEntries(Object.entries(roundsUs).map(([k, v]) => [k, v.map((x) => round(x))])),
      ratioRouterOverLocal: round(us.routerTransport / us.local, 1),
      ratioLocalOverPlain: round(us.local / us.plainFunction, 1),
    };
  } finally {
    await t.dispose();
    rmSync(t.dataDir, { recursive: true, force: true });
  }
}
