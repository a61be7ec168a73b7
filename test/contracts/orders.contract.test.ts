import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { OrderCreatedSchema } from "../../gen/orders/v1/events_pb.ts";
import { OrderService, OrderStatus, SagaState } from "../../gen/orders/v1/orders_pb.ts";
import catalog from "../../modules/catalog/index.ts";
import customers from "../../modules/customers/index.ts";
import orders from "../../modules/orders/index.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { errorReason, fieldViolations } from "../../platform/rpc/errors.ts";
import { PlacedOrders } from "../../modules/orders/db/placed-orders.ts";
import { collectEvents } from "../support/events.ts";
import { bootModules, waitFor } from "../support/platform.ts";

// The orders contract lives outside modules/ because it boots catalog and customers too, and no
// file under modules/orders may import another module (test/architecture/check.ts).

const created = (e: EventEnvelope) => fromBinary(OrderCreatedSchema, e.payload);

// The orders module's tables, counted to prove that a rejected request wrote nothing.
const tables = ["orders", "order_lines", "idempotency_keys", "selaras_outbox"] as const;

describe("orders contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof OrderService>>;
  let events: ReturnType<typeof collectEvents>;
  let customerId: string;
  let kopi: string; // 2500 cents
  let teh: string; // 1200 cents

  beforeAll(async () => {
    t = await bootModules([catalog, customers, orders]);
    client = t.platform.client(OrderService);
    events = collectEvents(t.platform, "orders", [OrderCreatedSchema.typeName]);
    const products = t.platform.client(CatalogService);
    kopi = (await products.createProduct({ sku: "KOPI", name: "Kopi", priceCents: 2500n })).product!.id;
    teh = (await products.createProduct({ sku: "TEH", name: "Teh", priceCents: 1200n })).product!.id;
    customerId = (await t.platform.client(CustomerService).createCustomer({ email: "ana@example.com", name: "Ana", creditLimitCents: 1_000_000n })).customer!.id;
  });
  afterAll(async () => {
    await events.stop();
    await t.dispose();
  });

  async function rowCounts(): Promise<Record<(typeof tables)[number], number>> {
    const storage = t.platform.storage("orders");
    const counts = await Promise.all(tables.map(async (table) => Number((await storage.queryRaw<{ n: number }>(`SELECT count(*) AS n FROM ${table}`))[0]!.n)));
    return Object.fromEntries(tables.map((table, i) => [table, counts[i]!])) as Record<(typeof tables)[number], number>;
  }

  /** Module-to-module calls this platform made to `service` so far (from the RPC client metric). */
  async function rpcCalls(service: string): Promise<number> {
    const metric = await t.platform.metrics.rpcDuration.get();
    return metric.values.filter((v) => v.metricName?.endsWith("_count") && v.labels.service === service).reduce((a, v) => a + v.value, 0);
  }

  /**
   * Places a fresh order, waits until the platform settled (every outbox published, every
   * subscriber caught up) and for the order's event: every event committed before it has been
   * seen then — how the test proves an event was *not* published, without sleeping.
   */
  async function barrier(): Promise<EventEnvelope[]> {
    const { order } = await client.placeOrder({ customerId, lines: [{ productId: teh, quantity: 1 }] });
    // Every outbox published and every subscriber caught up: on NATS orders travel on different
    // partitions, so the barrier's own event alone proves nothing about the others.
    await t.platform.settle();
    return waitFor(() => (events.events.some((e) => e.aggregateId === order!.id) ? [...events.events] : undefined), { what: "the barrier event" });
  }

  const eventsFor = (seen: EventEnvelope[], orderId: string) => seen.filter((e) => e.aggregateId === orderId);

  it("places a PENDING order priced from the catalog and publishes OrderCreated with the same lines", async () => {
    const before = Date.now();
    const { order, replayed } = await client.placeOrder({ customerId, lines: [{ productId: teh, quantity: 3 }, { productId: kopi, quantity: 2 }] });
    expect(replayed).toBe(false);
    expect(order).toMatchObject({
      customerId,
      status: OrderStatus.PENDING,
      totalCents: 3n * 1200n + 2n * 2500n,
      reason: "",
      lines: [
        { productId: teh, quantity: 3, unitPriceCents: 1200n, lineTotalCents: 3600n },
        { productId: kopi, quantity: 2, unitPriceCents: 2500n, lineTotalCents: 5000n },
      ],
    });
    expect(timestampMs(order!.createdAt!)).toBeGreaterThanOrEqual(before);
    // Read back: the same order, now with its saga, which waits for the payment until its deadline.
    const read = (await client.getOrder({ id: order!.id })).order!;
    expect({ ...read, saga: undefined }).toEqual(order);
    expect(read.saga).toMatchObject({ state: SagaState.AWAITING_PAYMENT, compensationAttempts: 0, reason: "", history: [{ state: SagaState.AWAITING_PAYMENT, note: "order-placed" }] });
    expect(timestampMs(read.saga!.deadline!)).toBeGreaterThan(timestampMs(order!.createdAt!));

    const seen = await waitFor(() => eventsFor(events.events, order!.id)[0]);
    expect(seen.type).toBe(OrderCreatedSchema.typeName);
    const e = created(seen);
    expect(e).toMatchObject({ orderId: order!.id, customerId, totalCents: 8600n });
    expect(e.lines).toEqual(order!.lines);
    expect(e.createdAt).toEqual(order!.createdAt);
  });

  it("replays the same key and body: the same order, replayed, no second event, no catalog or customers call", async () => {
    const req = { customerId, lines: [{ productId: kopi, quantity: 1 }], idempotencyKey: "replay-1" };
    const first = await client.placeOrder(req);
    expect(first.replayed).toBe(false);
    const callsBefore = (await rpcCalls(CatalogService.typeName)) + (await rpcCalls(CustomerService.typeName));

    // A price change after placement does not change the replayed order.
    await t.platform.client(CatalogService).updateProduct({ id: kopi, priceCents: 9999n });
    const again = await client.placeOrder(req);
    await t.platform.client(CatalogService).updateProduct({ id: kopi, priceCents: 2500n });
    expect(again.replayed).toBe(true);
    expect(again.order).toEqual(first.order);
    expect((await rpcCalls(CatalogService.typeName)) + (await rpcCalls(CustomerService.typeName))).toBe(callsBefore + 2); // only the two updateProduct calls

    expect(eventsFor(await barrier(), first.order!.id)).toHaveLength(1);
  });

  it("rejects the same key with a different body: AlreadyExists idempotency-key-reused, nothing written", async () => {
    const first = await client.placeOrder({ customerId, lines: [{ productId: kopi, quantity: 1 }], idempotencyKey: "reused" });
    const before = await rowCounts();
    for (const lines of [[{ productId: kopi, quantity: 2 }], [{ productId: teh, quantity: 1 }], [{ productId: kopi, quantity: 1 }, { productId: teh, quantity: 1 }]]) {
      const err = await client.placeOrder({ customerId, lines, idempotencyKey: "reused" }).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.code).toBe(Code.AlreadyExists);
      expect(errorReason(err)).toBe("idempotency-key-reused");
    }
    expect(await rowCounts()).toEqual(before);
    // The key still answers with its first order.
    expect((await client.placeOrder({ customerId, lines: [{ productId: kopi, quantity: 1 }], idempotencyKey: "reused" })).order?.id).toBe(first.order!.id);
  });

  it("places exactly one order for concurrent requests with one key", async () => {
    const before = await rowCounts();
    const req = { customerId, lines: [{ productId: teh, quantity: 4 }], idempotencyKey: "race-1" };
    const results = await Promise.all(Array.from({ length: 5 }, () => client.placeOrder(req)));
    expect(new Set(results.map((r) => r.order!.id)).size).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(await rowCounts()).toMatchObject({ orders: before.orders + 1, idempotency_keys: before.idempotency_keys + 1, selaras_outbox: before.selaras_outbox + 1 });
    expect(eventsFor(await barrier(), results[0]!.order!.id)).toHaveLength(1);
  });

  it("rolls back the loser of concurrent requests with one key and different bodies", async () => {
    const before = await rowCounts();
    const results = await Promise.allSettled([
      client.placeOrder({ customerId, lines: [{ productId: teh, quantity: 1 }], idempotencyKey: "race-2" }),
      client.placeOrder({ customerId, lines: [{ productId: teh, quantity: 2 }], idempotencyKey: "race-2" }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason.code).toBe(Code.AlreadyExists);
    expect(errorReason(lost.reason)).toBe("idempotency-key-reused");
    expect(await rowCounts()).toMatchObject({ orders: before.orders + 1, order_lines: before.order_lines + 1, selaras_outbox: before.selaras_outbox + 1 });
  });

  it("rejects an unknown customer naming customerId, writing nothing", async () => {
    const before = await rowCounts();
    const err = await client.placeOrder({ customerId: "no-such-customer", lines: [{ productId: kopi, quantity: 1 }], idempotencyKey: "ghost-customer" }).catch((e) => e);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(errorReason(err)).toBe("customer-not-found");
    expect(fieldViolations(err).map((v) => v.field)).toEqual(["customerId"]);
    expect(await rowCounts()).toEqual(before);
  });

  it("rejects unknown products naming each lines[i].productId, writing nothing", async () => {
    const before = await rowCounts();
    const err = await client
      .placeOrder({ customerId, lines: [{ productId: kopi, quantity: 1 }, { productId: "nope-1", quantity: 1 }, { productId: "nope-2", quantity: 1 }] })
      .catch((e) => e);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(errorReason(err)).toBe("product-not-found");
    expect(fieldViolations(err).map((v) => v.field)).toEqual(["lines[1].productId", "lines[2].productId"]);
    expect(await rowCounts()).toEqual(before);
  });

  it("names the bad field on invalid input", async () => {
    const fields = async (req: Parameters<typeof client.placeOrder>[0]) => {
      const err = await client.placeOrder(req).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.code).toBe(Code.InvalidArgument);
      return fieldViolations(err).map((v) => v.field);
    };
    const before = await rowCounts();
    expect(await fields({ customerId, lines: [{ productId: kopi, quantity: 0 }] })).toEqual(["lines[0].quantity"]);
    expect(await fields({ customerId, lines: [{ productId: kopi, quantity: -3 }] })).toEqual(["lines[0].quantity"]);
    expect(await fields({ customerId, lines: [{ productId: kopi, quantity: 10_001 }] })).toEqual(["lines[0].quantity"]);
    expect(await fields({ customerId: "", lines: [{ productId: "", quantity: 1 }] })).toEqual(["customerId", "lines[0].productId"]);
    expect(await fields({ customerId, lines: [] })).toEqual(["lines"]);
    expect(await fields({ customerId, lines: Array.from({ length: 101 }, (_, i) => ({ productId: `p${i}`, quantity: 1 })) })).toEqual(["lines"]);
    // One line per product: a repeat is rejected, not merged.
    expect(await fields({ customerId, lines: [{ productId: kopi, quantity: 1 }, { productId: teh, quantity: 1 }, { productId: kopi, quantity: 2 }] })).toEqual(["lines[2].productId"]);
    expect(await fields({ customerId, lines: [{ productId: kopi, quantity: 1 }], idempotencyKey: "k".repeat(201) })).toEqual(["idempotencyKey"]);
    expect(await rowCounts()).toEqual(before);
  });

  it("answers NotFound order-not-found for an unknown id", async () => {
    const err = await client.getOrder({ id: "nope" }).catch((e) => e);
    expect(err.code).toBe(Code.NotFound);
    expect(errorReason(err)).toBe("order-not-found");
  });

  it("keeps placed orders for the saga's steps: read once from the database, then from memory; the least recently used go first", async () => {
    const placedIds = [];
    for (let i = 0; i < 3; i++) placedIds.push((await client.placeOrder({ customerId, lines: [{ productId: teh, quantity: i + 1 }] })).order!.id);
    const storage = t.platform.storage("orders");
    let reads = 0;
    const counting: ModuleStorage = { ...storage, module: storage.module, dialect: storage.dialect, read: (q, v) => (reads++, storage.read(q, v)), transact: (b) => storage.transact(b), queryRaw: (q, p) => storage.queryRaw(q, p) };
    const orders = new PlacedOrders(2);

    const first = await orders.get(counting, placedIds[0]!);
    expect(first).toEqual({ id: placedIds[0], customerId, totalCents: 1200, lines: [{ productId: teh, quantity: 1, unitPriceCents: 1200, lineTotalCents: 1200 }] });
    const fromDb = reads;
    expect(fromDb).toBeGreaterThan(0);
    expect(await orders.get(counting, placedIds[0]!)).toEqual(first);
    expect(reads).toBe(fromDb); // from memory
    expect(await orders.get(counting, "0190f0f0-0000-7000-8000-000000000000")).toBeUndefined();

    // Remembered at placement (as PlaceOrder does after its commit): no read at all.
    orders.remember({ id: placedIds[1]!, customerId, totalCents: 2400, lines: [] });
    reads = 0;
    expect((await orders.get(counting, placedIds[1]!))?.totalCents).toBe(2400);
    expect(reads).toBe(0);
    // Capacity 2: the third order pushes out the least recently used (the first).
    await orders.get(counting, placedIds[2]!);
    reads = 0;
    await orders.get(counting, placedIds[0]!);
    expect(reads).toBeGreaterThan(0);
  });

  describe("REST", () => {
    const post = (body: string, headers: Record<string, string> = {}) =>
      t.platform.fetch(new Request("http://x/api/v1/orders", { method: "POST", headers: { "content-type": "application/json", ...headers }, body }));
    const get = (path: string) => t.platform.fetch(new Request(`http://x${path}`));
    const json = (res: Response): Promise<any> => res.json();
    const fields = (body: any): string[] => body.details.flatMap((d: any) => d.debug?.fieldViolations ?? []).map((v: any) => v.field);
    const reason = (body: any): string | undefined => body.details.find((d: any) => d.type === "selaras.v1.ErrorInfo")?.debug.reason;

    it("POST answers 202 {id, status}; GET reads the whole order", async () => {
      const res = await post(JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 2 }, { productId: teh, quantity: 1 }] }));
      expect(res.status).toBe(202);
      const placed = await json(res);
      expect(placed).toEqual({ id: expect.any(String), status: "PENDING" });
      expect(res.headers.get("Idempotent-Replayed")).toBeNull();

      const read = await get(`/api/v1/orders/${placed.id}`);
      expect(read.status).toBe(200);
      const body = await json(read);
      expect(body).toEqual({
        id: placed.id,
        customerId,
        status: "PENDING",
        totalCents: 6200,
        lines: [
          { productId: kopi, quantity: 2, unitPriceCents: 2500, lineTotalCents: 5000 },
          { productId: teh, quantity: 1, unitPriceCents: 1200, lineTotalCents: 1200 },
        ],
        createdAt: expect.any(String),
        saga: { state: "AWAITING_PAYMENT", deadline: expect.any(String), compensationAttempts: 0, history: [{ at: body.createdAt, state: "AWAITING_PAYMENT", note: "order-placed" }] },
      });
      expect(new Date(body.createdAt).toISOString()).toBe(body.createdAt);
    });

    it("replays by Idempotency-Key: same body 202 with the same id, different body 409", async () => {
      const body = { customerId, lines: [{ productId: teh, quantity: 5 }] };
      const first = await post(JSON.stringify(body), { "Idempotency-Key": "rest-key-1" });
      expect(first.status).toBe(202);
      const { id } = await json(first);
      // Key order and whitespace of the JSON do not matter, only the request.
      const again = await post(` { "lines": [ { "quantity": 5, "productId": "${teh}" } ], "customerId": "${customerId}" } `, { "idempotency-key": "rest-key-1" });
      expect(again.status).toBe(202);
      expect(await json(again)).toEqual({ id, status: "PENDING" });
      expect(again.headers.get("Idempotent-Replayed")).toBe("true");

      const other = await post(JSON.stringify({ ...body, lines: [{ productId: teh, quantity: 6 }] }), { "Idempotency-Key": "rest-key-1" });
      expect(other.status).toBe(409);
      const err = await json(other);
      expect(err.code).toBe("already_exists");
      expect(reason(err)).toBe("idempotency-key-reused");
      expect(eventsFor(await barrier(), id)).toHaveLength(1);
    });

    it("answers 400 naming Idempotency-Key when it is empty or longer than 200 characters", async () => {
      const before = await rowCounts();
      for (const key of ["", "k".repeat(201)]) {
        const res = await post(JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 1 }] }), { "Idempotency-Key": key });
        expect(res.status).toBe(400);
        expect(fields(await json(res))).toEqual(["Idempotency-Key"]);
      }
      expect((await post(JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 1 }] }), { "Idempotency-Key": "k".repeat(200) })).status).toBe(202);
      expect((await rowCounts()).orders).toBe(before.orders + 1);
    });

    it("answers 400 naming the field for malformed JSON, wrong types and bad quantities, writing nothing", async () => {
      const before = await rowCounts();
      const cases: Array<[string, string[]]> = [
        ["{not json", ["(body)"]],
        ["[]", ["(body)"]],
        [JSON.stringify({ customerId: 5, lines: "x" }), ["customerId", "lines"]],
        [JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: "2" }] }), ["lines[0].quantity"]],
        [JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: -1 }] }), ["lines[0].quantity"]],
        [JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 0 }] }), ["lines[0].quantity"]],
        [JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 1.5 }] }), ["lines[0].quantity"]],
        [JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 1, unitPriceCents: 1 }] }), ["lines[0].unitPriceCents"]],
        [JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 1 }], totalCents: 1 }), ["totalCents"]],
        [JSON.stringify({ lines: [{ productId: kopi, quantity: 1 }] }), ["customerId"]],
      ];
      for (const [body, expected] of cases) {
        const res = await post(body);
        expect(res.status, body).toBe(400);
        const err = await json(res);
        expect(err.code, body).toBe("invalid_argument");
        expect(fields(err), body).toEqual(expected);
      }
      expect(await rowCounts()).toEqual(before);
    });

    it("answers 400 with the reason and the field for an unknown customer or product", async () => {
      const unknownCustomer = await post(JSON.stringify({ customerId: "nobody", lines: [{ productId: kopi, quantity: 1 }] }));
      expect(unknownCustomer.status).toBe(400);
      const a = await json(unknownCustomer);
      expect([reason(a), fields(a)]).toEqual(["customer-not-found", ["customerId"]]);

      const unknownProduct = await post(JSON.stringify({ customerId, lines: [{ productId: "nothing", quantity: 1 }] }));
      expect(unknownProduct.status).toBe(400);
      const b = await json(unknownProduct);
      expect([reason(b), fields(b)]).toEqual(["product-not-found", ["lines[0].productId"]]);
    });

    it("rejects a body over http.maxBodyBytes with 413 in the one error shape, writing nothing", async () => {
      const before = await rowCounts();
      const filler = "x".repeat(t.platform.config.http.maxBodyBytes);
      const res = await post(JSON.stringify({ customerId, lines: [{ productId: kopi, quantity: 1 }], filler }));
      expect(res.status).toBe(413);
      expect(res.headers.get("content-type")).toMatch(/application\/json/);
      expect((await json(res)).code).toBe("resource_exhausted");
      expect(await rowCounts()).toEqual(before);
    });

    it("answers 404 order-not-found for an unknown id", async () => {
      const res = await get("/api/v1/orders/nope");
      expect(res.status).toBe(404);
      const body = await json(res);
      expect(body.code).toBe("not_found");
      expect(reason(body)).toBe("order-not-found");
    });
  });
});

describe("orders: idempotency keys expire", () => {
  it("forgets a key after modules.orders.idempotencyKeyRetentionHours: the same key then places a new order", async () => {
    // 0.0001 h = 360 ms, so the background expiry runs every 90 ms.
    const t = await bootModules([catalog, customers, orders], { modules: { orders: { idempotencyKeyRetentionHours: 0.0001 } } });
    try {
      const productId = (await t.platform.client(CatalogService).createProduct({ sku: "EXP", name: "Exp", priceCents: 100n })).product!.id;
      const customerId = (await t.platform.client(CustomerService).createCustomer({ email: "exp@example.com", name: "Exp", creditLimitCents: 1_000n })).customer!.id;
      const client = t.platform.client(OrderService);
      const req = { customerId, lines: [{ productId, quantity: 1 }], idempotencyKey: "short-lived" };
      const first = (await client.placeOrder(req)).order!;
      const again = await waitFor(async () => {
        const r = await client.placeOrder(req);
        return r.order!.id !== first.id ? r : undefined;
      }, { what: "the key to expire" });
      expect(again.replayed).toBe(false);
    } finally {
      await t.dispose();
    }
  });

  it("refuses to start with a bad retention, naming the key", async () => {
    await expect(bootModules([catalog, customers, orders], { modules: { orders: { idempotencyKeyRetentionHours: -1 } } })).rejects.toThrow(/modules\.orders\.idempotencyKeyRetentionHours: /);
  });
});

// Admission control: with no payments or inventory here, every saga waits for its payment, so the
// backlog is exactly the orders placed.
describe("orders contract: too many sagas in flight", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let customerId: string;
  let teh: string;
  const LIMIT = 3;

  beforeAll(async () => {
    t = await bootModules([catalog, customers, orders], { modules: { orders: { saga: { maxInFlight: LIMIT } } } });
    teh = (await t.platform.client(CatalogService).createProduct({ sku: "TEH", name: "Teh", priceCents: 1200n })).product!.id;
    customerId = (await t.platform.client(CustomerService).createCustomer({ email: "budi@example.com", name: "Budi", creditLimitCents: 1_000_000n })).customer!.id;
  });
  afterAll(() => t.dispose());

  const post = (headers: Record<string, string> = {}) =>
    t.platform.fetch(
      new Request("http://x/api/v1/orders", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ customerId, lines: [{ productId: teh, quantity: 1 }] }) }),
    );
  const orderRows = async () => Number((await t.platform.storage("orders").queryRaw<{ n: number }>("SELECT count(*) AS n FROM orders"))[0]!.n);

  it("refuses new orders at the limit (429, orders-overloaded, Retry-After; ResourceExhausted over RPC), writes nothing for them, still answers replays, and accepts again once sagas finish", async () => {
    const accepted = [];
    for (let i = 0; i < LIMIT; i++) {
      const res = await post({ "Idempotency-Key": `admit-${i}` });
      expect(res.status).toBe(202);
      accepted.push(((await res.json()) as { id: string }).id);
    }

    const refused = await post();
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    const body = (await refused.json()) as { code: string; message: string; details: Array<{ debug?: { reason?: string } }> };
    expect([body.code, body.details[0]?.debug?.reason]).toEqual(["resource_exhausted", "orders-overloaded"]);
    expect(body.message).toMatch(/modules\.orders\.saga\.maxInFlight = 3/);
    const err = await t.platform
      .client(OrderService)
      .placeOrder({ customerId, lines: [{ productId: teh, quantity: 1 }] })
      .catch((e: unknown) => ConnectError.from(e));
    expect([(err as ConnectError).code, errorReason(err as ConnectError)]).toEqual([Code.ResourceExhausted, "orders-overloaded"]);
    expect(await orderRows()).toBe(LIMIT);

    // A client retrying an accepted order gets its answer, overload or not.
    const replay = await post({ "Idempotency-Key": "admit-0" });
    expect([replay.status, ((await replay.json()) as { id: string }).id, replay.headers.get("Idempotent-Replayed")]).toEqual([202, accepted[0], "true"]);

    // Two sagas finish (as payments and inventory would have them): the count, read from the
    // database every second, lets orders in again.
    await t.platform.storage("orders").queryRaw("UPDATE sagas SET state = 'CONFIRMED' WHERE order_id IN (?, ?)", [accepted[0], accepted[1]]);
    const again = await waitFor(async () => {
      const res = await post();
      return res.status === 202 ? res : undefined;
    }, { what: "an order accepted after the backlog drained" });
    expect(again.status).toBe(202);
    expect(await orderRows()).toBe(LIMIT + 1);
  });
});
