/**
 * The public contract (PRODUCT.md) over real HTTP against the real binary: REST for products,
 * customers, stock, orders (placed PENDING, confirmed by the saga) and the order-history read
 * model; idempotent order placement; health, readiness and metrics; Connect-RPC on the same port;
 * trace context propagation. The saga's outcomes are covered in depth by saga.e2e.test.ts.
 *
 * Runs once per topology (harness.ts `TOPOLOGIES`): one embedded process, one process on Postgres + NATS, the
 * three processes of config/split.json. Same tests, same assertions: `topo.api` sends each request
 * to the process that serves its path, and process-level checks (health, metrics, settling) look at
 * every process.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetProductRequestSchema, GetProductResponseSchema } from "../../gen/catalog/v1/catalog_pb.ts";
import { waitFor } from "../support/platform.ts";
import { api, isBun, randomTraceparent, startTopology, TOPOLOGIES, type Api, type RunningTopology } from "./harness.ts";

describe.skipIf(!isBun).each(TOPOLOGIES)("public contract over HTTP, %s topology (e2e)", (kind) => {
  let topo: RunningTopology;
  let http: Api;
  // Unique per run, so skus and emails never collide with another test's.
  const run = Math.random().toString(36).slice(2, 8);

  beforeAll(async () => {
    topo = await startTopology(kind);
    http = topo.api;
  });
  afterAll(() => topo?.stop());

  const newProduct = async (name: string, priceCents: number, stock = 0) => {
    const r = await http.post("/api/v1/products", { sku: `${run}-${name}`.replace(/\s/g, "_"), name, priceCents });
    expect(r.status, r.text).toBe(201);
    if (stock > 0) {
      const s = await http.post(`/api/v1/inventory/${r.body.id}/restock`, { quantity: stock });
      expect(s.status, s.text).toBe(200);
    }
    return r.body as { id: string; sku: string; name: string; priceCents: number; version: number };
  };
  /** The order once its saga is done. */
  const outcome = (id: string) =>
    waitFor(
      async () => {
        const r = await http.get(`/api/v1/orders/${id}`);
        expect(r.status, r.text).toBe(200);
        return r.body.status !== "PENDING" && r.body;
      },
      { timeoutMs: 15_000, what: `the saga of order ${id} to finish` },
    );
  const newCustomer = async (name: string, creditLimitCents = 1_000_000) => {
    const r = await http.post("/api/v1/customers", { email: `${name.toLowerCase().replace(/\W/g, "")}.${run}@example.com`, name, creditLimitCents });
    expect(r.status, r.text).toBe(201);
    return r.body as { id: string; email: string; name: string; creditLimitCents: number };
  };
  const history = async (customerId: string) => {
    const r = await http.get(`/api/v1/customers/${customerId}/orders`);
    expect(r.status, r.text).toBe(200);
    return r.body as { customerId: string; orders: Array<{ id: string; status: string; totalCents: number; customerName: string; lines: Array<{ productId: string; productName: string; quantity: number; unitPriceCents: number }> }> };
  };

  describe("products", () => {
    it("creates, reads and updates a product", async () => {
      const created = await newProduct("Kopi Luwak", 2500);
      expect(created).toMatchObject({ sku: `${run}-Kopi_Luwak`, name: "Kopi Luwak", priceCents: 2500, version: 1 });
      expect(typeof created.id).toBe("string");

      const got = await http.get(`/api/v1/products/${created.id}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id: created.id, name: "Kopi Luwak", priceCents: 2500 });

      const updated = await http.put(`/api/v1/products/${created.id}`, { priceCents: 2700 });
      expect(updated.status, updated.text).toBe(200);
      expect(updated.body).toMatchObject({ id: created.id, name: "Kopi Luwak", priceCents: 2700, version: 2 });
      expect((await http.get(`/api/v1/products/${created.id}`)).body).toMatchObject({ priceCents: 2700, version: 2 });
    });

    it("answers an unknown product with 404 and the Connect error shape", async () => {
      const r = await http.get("/api/v1/products/no-such-product");
      expect(r.status).toBe(404);
      expect(r.headers.get("content-type")).toMatch(/application\/json/);
      expect(r.body).toMatchObject({ code: "not_found", message: expect.any(String), details: expect.any(Array) });
    });

    it("rejects a taken sku with 409 already_exists", async () => {
      const p = await newProduct("Teh", 900);
      const r = await http.post("/api/v1/products", { sku: p.sku, name: "Teh lain", priceCents: 1 });
      expect(r.status).toBe(409);
      expect(r.body.code).toBe("already_exists");
    });
  });

  describe("customers", () => {
    it("registers and reads a customer", async () => {
      const c = await newCustomer("Siti Rahma", 50_000);
      expect(c).toMatchObject({ name: "Siti Rahma", creditLimitCents: 50_000, email: `sitirahma.${run}@example.com` });
      const got = await http.get(`/api/v1/customers/${c.id}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id: c.id, name: "Siti Rahma", creditLimitCents: 50_000 });
      const unknown = await http.get("/api/v1/customers/no-such-customer");
      expect(unknown.status).toBe(404);
      expect(unknown.body.code).toBe("not_found");
    });
  });

  describe("orders and the order-history read model", () => {
    it("places an order (202 PENDING), prices it, the saga confirms it, and the read model shows it with names", async () => {
      const kopi = await newProduct("Kopi Toraja", 3100, 10);
      const gula = await newProduct("Gula Aren", 450, 10);
      const budi = await newCustomer("Budi Santoso");

      const placed = await http.post("/api/v1/orders", { customerId: budi.id, lines: [{ productId: kopi.id, quantity: 2 }, { productId: gula.id, quantity: 3 }] });
      expect(placed.status, placed.text).toBe(202);
      expect(placed.body).toMatchObject({ id: expect.any(String), status: "PENDING" });
      const orderId = placed.body.id as string;

      const got = await outcome(orderId);
      expect(got).toMatchObject({
        id: orderId,
        customerId: budi.id,
        status: "CONFIRMED",
        totalCents: 2 * 3100 + 3 * 450,
        lines: [
          { productId: kopi.id, quantity: 2, unitPriceCents: 3100 },
          { productId: gula.id, quantity: 3, unitPriceCents: 450 },
        ],
      });

      expect(got.reason).toBeUndefined();
      expect((await http.get(`/api/v1/inventory/${kopi.id}`)).body).toEqual({ productId: kopi.id, available: 8, reserved: 2 });

      // Events of different modules may reach the read model in any order (on NATS they travel on
      // separate streams): until CustomerRegistered/ProductCreated are projected the order shows
      // "" for their names (domain/order-history.ts). So wait for the names and the outcome, then assert them.
      const view = await waitFor(
        async () => {
          const o = (await history(budi.id)).orders.find((x) => x.id === orderId);
          return o && o.status === "CONFIRMED" && o.customerName !== "" && o.lines.every((l) => l.productName !== "") ? o : undefined;
        },
        { timeoutMs: 10_000, what: "the order CONFIRMED in the read model, with names" },
      );
      expect(view).toMatchObject({
        id: orderId,
        status: "CONFIRMED",
        totalCents: 7550,
        customerName: "Budi Santoso",
        lines: [
          { productId: kopi.id, productName: "Kopi Toraja", quantity: 2, unitPriceCents: 3100 },
          { productId: gula.id, productName: "Gula Aren", quantity: 3, unitPriceCents: 450 },
        ],
      });
      expect((await history(budi.id)).customerId).toBe(budi.id);

      // A rename reaches the read model; a price change does not re-price an order already placed.
      const renamed = await http.put(`/api/v1/products/${kopi.id}`, { name: "Kopi Toraja Sapan", priceCents: 9999 });
      expect(renamed.status, renamed.text).toBe(200);
      const after = await waitFor(
        async () => {
          const o = (await history(budi.id)).orders.find((x) => x.id === orderId);
          return o?.lines[0]?.productName === "Kopi Toraja Sapan" ? o : undefined;
        },
        { timeoutMs: 10_000, what: "the renamed product in the read model" },
      );
      expect(after.totalCents).toBe(7550);
      expect(after.lines[0]).toMatchObject({ unitPriceCents: 3100, quantity: 2 });
      expect((await http.get(`/api/v1/orders/${orderId}`)).body.totalCents).toBe(7550);
    });

    it("answers an unknown order with 404 not_found and an unknown customer's history with no orders", async () => {
      const r = await http.get("/api/v1/orders/no-such-order");
      expect(r.status).toBe(404);
      expect(r.body.code).toBe("not_found");
      const h = await history("no-such-customer");
      expect(h).toEqual({ customerId: "no-such-customer", orders: [] });
    });

    it("replays an Idempotency-Key with the same body and rejects it with a different body", async () => {
      const p = await newProduct("Sambal", 1200, 5);
      const q = await newProduct("Kerupuk", 300);
      const dewi = await newCustomer("Dewi Lestari");
      const key = `key-${run}-${Math.random()}`;
      const body = { customerId: dewi.id, lines: [{ productId: p.id, quantity: 1 }] };

      const first = await http.post("/api/v1/orders", body, { headers: { "Idempotency-Key": key } });
      expect(first.status, first.text).toBe(202);
      const again = await http.post("/api/v1/orders", body, { headers: { "Idempotency-Key": key } });
      expect(again.status, again.text).toBe(202);
      expect(again.body.id).toBe(first.body.id);

      const other = await http.post("/api/v1/orders", { customerId: dewi.id, lines: [{ productId: q.id, quantity: 5 }] }, { headers: { "Idempotency-Key": key } });
      expect(other.status, other.text).toBe(409);
      expect(other.body).toMatchObject({ code: "already_exists", message: expect.any(String), details: expect.any(Array) });

      // Exactly one order exists for the key: once everything has been projected (the saga is
      // done, its outcome in the read model), the customer has one order, the first one,
      // unchanged by the rejected request, and one unit of stock went.
      expect((await outcome(first.body.id)).status).toBe("CONFIRMED");
      await waitFor(async () => (await history(dewi.id)).orders[0]?.status === "CONFIRMED", { timeoutMs: 10_000, what: "the outcome in the read model" });
      await waitFor(() => topo.settled(), { timeoutMs: 10_000, what: "outbox and consumers to settle" });
      const h = await history(dewi.id);
      expect(h.orders.map((o) => o.id)).toEqual([first.body.id]);
      expect(h.orders[0]).toMatchObject({ totalCents: 1200, lines: [{ productId: p.id, quantity: 1 }] });
      expect((await http.get(`/api/v1/inventory/${p.id}`)).body).toEqual({ productId: p.id, available: 4, reserved: 1 });
    });
  });

  describe("operations endpoints", () => {
    it("reports liveness and readiness (every process)", async () => {
      for (const [name, srv] of Object.entries(topo.processes)) {
        const live = await api(srv.url).get("/healthz");
        expect(live.status, name).toBe(200);
        expect(live.body, name).toMatchObject({ status: "ok" });
        const ready = await api(srv.url).get("/readyz");
        expect(ready.status, `${name}: ${ready.text}`).toBe(200);
        expect(ready.body, name).toMatchObject({ status: "ready" });
      }
    });

    it("exports outbox, relay, consumer and HTTP metrics with real samples", async () => {
      // Produce traffic of each kind first, so the samples exist.
      const p = await newProduct("Metrik", 100, 1);
      const c = await newCustomer("Metrik Pelanggan");
      const o = await http.post("/api/v1/orders", { customerId: c.id, lines: [{ productId: p.id, quantity: 1 }] });
      expect(o.status, o.text).toBe(202);
      // The saga moves on in steps: backlog and lag can read 0 between two of them (they are not
      // read at one instant). Once its outcome is in the read model no step is left, so then wait.
      expect((await outcome(o.body.id)).status).toBe("CONFIRMED");
      await waitFor(async () => (await history(c.id)).orders[0]?.status === "CONFIRMED", { timeoutMs: 10_000, what: "the outcome in the read model" });
      await waitFor(async () => (await http.get(`/api/v1/customers/${c.id}/notifications`)).body.notifications?.length === 1, { timeoutMs: 10_000, what: "the order's notification" });
      await waitFor(() => topo.settled(), { timeoutMs: 10_000, what: "outbox and consumers to settle" });

      // Every process's /metrics, taken together: each module's samples come from its own process.
      const r = await topo.metrics();
      for (const status of r.statuses) expect(status).toBe(200);
      for (const type of r.contentTypes) expect(type).toMatch(/text\/plain/);
      for (const name of ["selaras_outbox_backlog", "selaras_relay_lag_seconds", "selaras_consumer_lag_events", "selaras_http_request_duration_seconds"]) {
        expect(r.text, name).toContain(`# TYPE ${name} `);
      }
      const samples = r.samples;
      const one = (name: string, labels: Record<string, string>) => samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      for (const module of ["catalog", "customers", "orders", "payments", "inventory"]) {
        expect(one("selaras_outbox_backlog", { module })?.value, `backlog of ${module}`).toBe(0);
        expect(one("selaras_relay_lag_seconds_count", { module })?.value ?? 0, `relay lag samples of ${module}`).toBeGreaterThan(0);
      }
      const consumers = samples.filter((s) => s.name === "selaras_consumer_lag_events");
      expect(consumers.length, "one consumer-lag sample per consumer").toBeGreaterThan(0);
      expect(consumers.every((s) => s.value === 0)).toBe(true);
      expect(one("selaras_http_request_duration_seconds_count", { method: "POST", route: "/api/v1/orders", status: "202" })?.value ?? 0).toBeGreaterThan(0);
    });
  });

  describe("Connect-RPC on the same port", () => {
    it("serves catalog.v1.CatalogService/GetProduct in the Connect JSON protocol", async () => {
      const p = await newProduct("Rendang", 4500);
      const r = await http.post("/catalog.v1.CatalogService/GetProduct", { id: p.id });
      expect(r.status, r.text).toBe(200);
      expect(r.headers.get("content-type")).toMatch(/^application\/json/);
      // Proto3 JSON: int64 fields are strings.
      expect(r.body).toMatchObject({ product: { id: p.id, sku: p.sku, name: "Rendang", priceCents: "4500" } });
    });

    it("serves the Connect binary protocol too", async () => {
      const p = await newProduct("Soto", 2200);
      const res = await fetch(`${topo.urlFor("/catalog.v1.CatalogService/GetProduct")}/catalog.v1.CatalogService/GetProduct`, {
        method: "POST",
        headers: { "content-type": "application/proto" },
        body: toBinary(GetProductRequestSchema, create(GetProductRequestSchema, { id: p.id })),
      });
      expect(res.status).toBe(200);
      const msg = fromBinary(GetProductResponseSchema, new Uint8Array(await res.arrayBuffer()));
      expect(msg.product).toMatchObject({ id: p.id, name: "Soto", priceCents: 2200n });
    });

    it("serves gRPC-Web on the same port: a data frame, then trailers with grpc-status", async () => {
      const p = await newProduct("Gado-gado", 1800);
      const call = async (id: string) => {
        const res = await fetch(`${topo.urlFor("/catalog.v1.CatalogService/GetProduct")}/catalog.v1.CatalogService/GetProduct`, {
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
          body: grpcWebFrame(0, toBinary(GetProductRequestSchema, create(GetProductRequestSchema, { id }))),
        });
        expect(res.status).toBe(200);
        return grpcWebFrames(new Uint8Array(await res.arrayBuffer()));
      };
      const ok = await call(p.id);
      expect(ok.map((f) => f.flags)).toEqual([0, 0x80]);
      expect(fromBinary(GetProductResponseSchema, ok[0]!.data).product).toMatchObject({ id: p.id, name: "Gado-gado", priceCents: 1800n });
      expect(new TextDecoder().decode(ok[1]!.data)).toMatch(/grpc-status: ?0/);
      const missing = await call("no-such-product");
      expect(missing.map((f) => f.flags)).toEqual([0x80]);
      expect(new TextDecoder().decode(missing[0]!.data)).toMatch(/grpc-status: ?5/); // NOT_FOUND
    });

    it("answers an unknown id with a Connect error JSON, code not_found", async () => {
      const r = await http.post("/catalog.v1.CatalogService/GetProduct", { id: "no-such-product" });
      expect(r.status).toBe(404);
      expect(r.headers.get("content-type")).toMatch(/^application\/json/);
      expect(r.body).toMatchObject({ code: "not_found", message: expect.any(String) });
    });
  });

  describe("trace context", () => {
    it("continues the caller's trace: the response traceparent has the request's trace id and a new span", async () => {
      const { header, traceId } = randomTraceparent();
      for (const path of ["/healthz", "/api/v1/products/no-such-product"]) {
        const res = await fetch(topo.urlFor(path) + path, { headers: { traceparent: header } });
        await res.text();
        const back = res.headers.get("traceparent");
        expect(back, path).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
        expect(back!.split("-")[1], path).toBe(traceId);
        expect(back, path).not.toBe(header);
      }
      const rpc = await fetch(`${topo.urlFor("/catalog.v1.CatalogService/GetProduct")}/catalog.v1.CatalogService/GetProduct`, { method: "POST", headers: { "content-type": "application/json", traceparent: header }, body: JSON.stringify({ id: "x" }) });
      await rpc.text();
      expect(rpc.headers.get("traceparent")?.split("-")[1]).toBe(traceId);
    });

    it("starts a new trace when there is none or it is malformed", async () => {
      const a = await fetch(`${topo.urlFor("/healthz")}/healthz`);
      const b = await fetch(`${topo.urlFor("/healthz")}/healthz`, { headers: { traceparent: "00-zz-not-a-trace" } });
      await Promise.all([a.text(), b.text()]);
      const ta = a.headers.get("traceparent")?.split("-")[1];
      const tb = b.headers.get("traceparent")?.split("-")[1];
      expect(ta).toMatch(/^[0-9a-f]{32}$/);
      expect(tb).toMatch(/^[0-9a-f]{32}$/);
      expect(ta).not.toBe(tb);
    });
  });
});

/** One gRPC-Web frame: a flags byte, a big-endian length, the payload. */
function grpcWebFrame(flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/** Splits a gRPC-Web response body into its frames. */
function grpcWebFrames(body: Uint8Array): Array<{ flags: number; data: Uint8Array }> {
  const frames: Array<{ flags: number; data: Uint8Array }> = [];
  for (let at = 0; at < body.length; ) {
    const len = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    frames.push({ flags: body[at]!, data: body.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return frames;
}
