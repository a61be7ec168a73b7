/**
 * Native gRPC (HTTP/2) on the second port, against the real binary, with an independent client:
 * `@grpc/grpc-js` with stubs loaded from `proto/` by `@grpc/proto-loader` — none of our generated
 * code or Connect on the client side.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/platform.ts";
import { api, isBun, randomTraceparent, repoRoot, serverPool, withReadonlyDb, type RunningServer } from "./harness.ts";

/** A unary call's outcome: the response or the gRPC error, and the response headers. */
interface Outcome<T> {
  readonly res?: T;
  readonly err?: grpc.ServiceError;
  readonly headers?: grpc.Metadata;
}

type Unary = (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;

/** Calls `method` of a grpc-js client; never rejects. */
function unary<T = any>(client: grpc.Client, method: string, req: unknown, metadata: Record<string, string> = {}): Promise<Outcome<T>> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = ((client as unknown as Record<string, Unary>)[method]!).call(client, req, md, (err, res) => resolve(err ? { err, headers } : { res: res as T, headers }));
    call.on("metadata", (m) => (headers = m));
  });
}

describe.skipIf(!isBun)("native gRPC on the second port (e2e)", () => {
  const pool = serverPool();
  let srv: RunningServer;
  let catalog: grpc.Client;
  let orders: grpc.Client;
  const run = Math.random().toString(36).slice(2, 8);

  beforeAll(async () => {
    srv = await pool.start({ args: ["--set", "grpc.port=0"] });
    expect(srv.grpcPort, "the listening line carries grpcPort").toEqual(expect.any(Number));
    expect(srv.grpcPort).not.toBe(srv.port);
    const def = protoLoader.loadSync(["catalog/v1/catalog.proto", "orders/v1/orders.proto"], {
      includeDirs: [join(repoRoot, "proto")],
      longs: String, // int64 as decimal strings
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const target = `127.0.0.1:${srv.grpcPort}`;
    catalog = new pkg.catalog.v1.CatalogService(target, grpc.credentials.createInsecure());
    orders = new pkg.orders.v1.OrderService(target, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    catalog?.close();
    orders?.close();
    await pool.dispose();
  });

  it("creates and reads a product over catalog.v1.CatalogService", async () => {
    const created = await unary(catalog, "CreateProduct", { sku: `${run}-nasi`, name: "Nasi Goreng", priceCents: "2750" });
    expect(created.err).toBeUndefined();
    const product = created.res.product;
    expect(product).toMatchObject({ id: expect.any(String), sku: `${run}-nasi`, name: "Nasi Goreng", priceCents: "2750", version: "1" });

    const got = await unary(catalog, "GetProduct", { id: product.id });
    expect(got.err).toBeUndefined();
    expect(got.res.product).toEqual(product);

    // The same store behind both ports: REST sees what gRPC wrote.
    const rest = await api(srv.url).get(`/api/v1/products/${product.id}`);
    expect(rest.status, rest.text).toBe(200);
    expect(rest.body).toMatchObject({ id: product.id, name: "Nasi Goreng", priceCents: 2750 });
  });

  it("answers an unknown id with status NOT_FOUND and the domain message", async () => {
    const r = await unary(catalog, "GetProduct", { id: "no-such-product" });
    expect(r.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(r.err?.details).toMatch(/no-such-product/);
    // Rich error details travel as grpc-status-details-bin, as gRPC clients expect.
    expect(r.err?.metadata.get("grpc-status-details-bin")).toHaveLength(1);
  });

  it("maps invalid input to INVALID_ARGUMENT naming the field", async () => {
    const r = await unary(catalog, "CreateProduct", { sku: `${run}-bad`, name: "", priceCents: "-1" });
    expect(r.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.err?.details).toMatch(/name|priceCents|price_cents/);
  });

  it("places an order over orders.v1.OrderService, priced by the catalog", async () => {
    const p = (await unary(catalog, "CreateProduct", { sku: `${run}-teh`, name: "Teh Botol", priceCents: "600" })).res.product;
    const c = await api(srv.url).post("/api/v1/customers", { email: `grpc.${run}@example.com`, name: "Rina", creditLimitCents: 100_000 });
    expect(c.status, c.text).toBe(201);

    const placed = await unary(orders, "PlaceOrder", { customerId: c.body.id, lines: [{ productId: p.id, quantity: 3 }], idempotencyKey: `grpc-${run}` });
    expect(placed.err).toBeUndefined();
    expect(placed.res.order).toMatchObject({
      id: expect.any(String),
      customerId: c.body.id,
      status: "ORDER_STATUS_PENDING",
      totalCents: "1800",
      lines: [{ productId: p.id, quantity: 3, unitPriceCents: "600", lineTotalCents: "1800" }],
    });
    const again = await unary(orders, "PlaceOrder", { customerId: c.body.id, lines: [{ productId: p.id, quantity: 3 }], idempotencyKey: `grpc-${run}` });
    expect(again.res?.order.id).toBe(placed.res.order.id);

    const got = await unary(orders, "GetOrder", { id: placed.res.order.id });
    expect(got.res?.order).toMatchObject({ id: placed.res.order.id, totalCents: "1800" });
    const unknownCustomer = await unary(orders, "PlaceOrder", { customerId: "no-such-customer", lines: [{ productId: p.id, quantity: 1 }] });
    expect(unknownCustomer.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("continues the caller's trace from traceparent metadata, into the response and the outbox", async () => {
    const { header, traceId } = randomTraceparent();
    const r = await unary(catalog, "CreateProduct", { sku: `${run}-sate`, name: "Sate", priceCents: "1500" }, { traceparent: header });
    expect(r.err).toBeUndefined();
    const back = String(r.headers?.get("traceparent")[0] ?? "");
    expect(back).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(back.split("-")[1]).toBe(traceId);
    expect(back).not.toBe(header);

    // The ProductCreated outbox row written by the call carries the same trace.
    const headers = await waitFor(
      () =>
        withReadonlyDb(join(srv.dataDir, "catalog.db"), (db) =>
          db.query<{ headers: string }, [string]>("SELECT headers FROM selaras_outbox WHERE aggregate_id = ?").get(r.res.product.id),
        ).then((row) => row?.headers),
      { timeoutMs: 10_000, what: "the outbox row of the new product" },
    );
    expect(headers).toContain(traceId);

    // An error carries the trace too (in the trailers).
    const missing = await unary(catalog, "GetProduct", { id: "no-such-product" }, { traceparent: header });
    expect(String(missing.err?.metadata.get("traceparent")[0]).split("-")[1]).toBe(traceId);
  });

  it("stops gracefully with a gRPC client still connected", async () => {
    const own = await pool.start({ args: ["--set", "grpc.port=0"] });
    const def = protoLoader.loadSync("catalog/v1/catalog.proto", { includeDirs: [join(repoRoot, "proto")] });
    const client = new ((grpc.loadPackageDefinition(def) as any).catalog.v1.CatalogService)(`127.0.0.1:${own.grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client;
    try {
      const r = await unary(client, "GetProduct", { id: "x" });
      expect(r.err?.code).toBe(grpc.status.NOT_FOUND); // the connection is open now
      const exit = await own.stop(15_000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(own.entries().some((e) => e.msg === "platform stopped")).toBe(true);
    } finally {
      client.close();
    }
  });
});
