import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { createFetchHandler } from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { waitFor } from "../../test/support/platform.ts";
import { domainError, errorReason } from "./errors.ts";
import { createRemoteTransport, isSafeToRepeat, type RemoteTransportOptions } from "./remote-transport.ts";

const PRODUCT = { id: "p1", sku: "KOPI-1", name: "Kopi", priceCents: 2500n, version: 1n };

/**
 * A fake network in front of a real Connect handler (binary protocol end to end, no socket, so the
 * test runs on Node and Bun alike). `fail` decides, per request, whether the "network" fails it
 * before the server sees it; every request that reaches the server is recorded.
 */
function network(impl: Partial<ServiceImpl<typeof CatalogService>>) {
  const router = createConnectRouter();
  router.service(CatalogService, impl);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, createFetchHandler(h)]));
  const seen: Array<{ path: string; headers: Headers }> = [];
  let fail: ((path: string) => Error | undefined) | undefined;
  let attempts = 0;
  const fetch = (async (input: string | URL, init?: RequestInit) => {
    attempts++;
    const req = new Request(String(input), init);
    const path = new URL(req.url).pathname;
    const err = fail?.(path);
    if (err) throw err;
    seen.push({ path, headers: req.headers });
    return handlers.get(path)!(req);
  }) as typeof globalThis.fetch;
  return {
    fetch,
    seen,
    attempts: () => attempts,
    failWith(f: ((path: string) => Error | undefined) | undefined) {
      fail = f;
    },
  };
}

/** An error like the one fetch throws when nothing listens (Bun sets `code`, Node's undici `cause.code`). */
const refused = () => Object.assign(new TypeError("Unable to connect"), { code: "ECONNREFUSED" });
const reset = () => new TypeError("fetch failed", { cause: Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }) });

function transport(net: ReturnType<typeof network>, overrides: Partial<RemoteTransportOptions> = {}) {
  const calls: Array<{ method: string; code: Code | undefined }> = [];
  const t = createRemoteTransport({
    baseUrl: "http://core.test",
    process: "core",
    defaultTimeoutMs: 2000,
    retry: { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5 },
    breaker: { threshold: 100, halfOpenAfterMs: 1000 },
    fetch: net.fetch,
    onCall: (m: DescMethod, code) => calls.push({ method: m.name, code }),
    ...overrides,
  });
  return { t, calls, client: createClient(CatalogService, t) };
}

const codeOf = async (p: Promise<unknown>): Promise<Code> => {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e).code;
  }
  throw new Error("expected the call to fail");
};

describe("remote transport", () => {
  it("calls the remote service in binary, with the caller's trace and error details intact", async () => {
    const net = network({
      getProduct: (req) => {
        if (req.id !== PRODUCT.id) throw domainError(Code.NotFound, "product-not-found", `product ${req.id} does not exist`, "catalog");
        return { product: PRODUCT };
      },
    });
    const traceparent = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";
    const { client, calls } = transport(net, { traceparent: () => traceparent });
    expect((await client.getProduct({ id: "p1" })).product).toMatchObject({ name: "Kopi", priceCents: 2500n });
    expect(net.seen[0]!.headers.get("content-type")).toBe("application/proto");
    expect(net.seen[0]!.headers.get("traceparent")).toBe(traceparent);
    expect(Number(net.seen[0]!.headers.get("connect-timeout-ms"))).toBeGreaterThan(0);

    const err = await client.getProduct({ id: "nope" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.NotFound });
    expect(errorReason(err as ConnectError)).toBe("product-not-found");
    expect(net.attempts()).toBe(2); // a domain answer is never retried
    expect(calls).toEqual([
      { method: "GetProduct", code: undefined },
      { method: "GetProduct", code: Code.NotFound },
    ]);
  });

  it("retries any method while the connection is refused (nothing was sent), then answers Unavailable", async () => {
    const net = network({ createProduct: () => ({ product: PRODUCT }) });
    const { client } = transport(net);
    net.failWith(refused);
    expect(await codeOf(client.createProduct({ sku: "A", name: "a", priceCents: 1n }))).toBe(Code.Unavailable);
    expect(net.attempts()).toBe(3);

    let left = 2;
    net.failWith(() => (left-- > 0 ? refused() : undefined));
    expect((await client.createProduct({ sku: "A", name: "a", priceCents: 1n })).product?.id).toBe("p1");
    expect(net.seen).toHaveLength(1); // created once
  });

  it("does not repeat a method with side effects once the request may have reached the server", async () => {
    let creates = 0;
    const net = network({
      createProduct: () => {
        creates++;
        throw new ConnectError("overloaded", Code.Unavailable);
      },
    });
    const { client } = transport(net);
    expect(await codeOf(client.createProduct({ sku: "A", name: "a", priceCents: 1n }))).toBe(Code.Unavailable);
    expect(creates).toBe(1);
    net.failWith(reset);
    expect(await codeOf(client.createProduct({ sku: "A", name: "a", priceCents: 1n }))).toBe(Code.Unavailable);
    expect(net.attempts()).toBe(2);
  });

  it("repeats a query after Unavailable or a broken connection", async () => {
    let calls = 0;
    const net = network({
      getProducts: () => {
        if (++calls === 1) throw new ConnectError("starting up", Code.Unavailable);
        return { products: [PRODUCT] };
      },
    });
    const { client } = transport(net);
    expect((await client.getProducts({ ids: ["p1"] })).products).toHaveLength(1);
    expect(calls).toBe(2);
    let left = 1;
    net.failWith(() => (left-- > 0 ? reset() : undefined));
    expect((await client.getProducts({ ids: ["p1"] })).products).toHaveLength(1);
  });

  it("fails with DeadlineExceeded when the callee does not answer in time, and does not retry it", async () => {
    let started = 0;
    const net = network({
      getProduct: (_req, ctx) => {
        started++;
        return new Promise((_resolve, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
      },
    });
    const { client } = transport(net);
    expect(await codeOf(client.getProduct({ id: "p1" }, { timeoutMs: 50 }))).toBe(Code.DeadlineExceeded);
    expect(started).toBe(1);
  });

  it("opens the circuit after consecutive failures, fails fast while open, and closes after a good trial call", async () => {
    const net = network({ getProduct: () => ({ product: PRODUCT }) });
    const states: string[] = [];
    const { client, t } = transport(net, { retry: { maxAttempts: 1, initialDelayMs: 1, maxDelayMs: 1 }, breaker: { threshold: 3, halfOpenAfterMs: 30 }, onCircuit: (s) => states.push(s) });
    net.failWith(refused);
    for (let i = 0; i < 3; i++) expect(await codeOf(client.getProduct({ id: "p1" }))).toBe(Code.Unavailable);
    expect(t.circuitState()).toBe(1);
    const before = net.attempts();
    const open = await client.getProduct({ id: "p1" }).catch((e: unknown) => ConnectError.from(e));
    expect(open).toMatchObject({ code: Code.Unavailable, rawMessage: expect.stringMatching(/circuit open/) });
    expect(net.attempts()).toBe(before); // failed without touching the network

    net.failWith(undefined);
    await waitFor(async () => (await client.getProduct({ id: "p1" }).catch(() => undefined))?.product?.id === "p1", { what: "a trial call to close the circuit" });
    expect(t.circuitState()).toBe(0);
    expect(states).toEqual(["open", "half-open", "closed"]);
  });

  it("treats methods whose proto declares an idempotency level as safe to repeat, and only those", () => {
    const byName = Object.fromEntries(CatalogService.methods.map((m) => [m.name, isSafeToRepeat(m)]));
    expect(byName).toEqual({ CreateProduct: false, GetProduct: true, UpdateProduct: false, GetProducts: true });
  });
});
