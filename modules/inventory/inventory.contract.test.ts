import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryReleasedSchema, InventoryReservationFailedSchema, InventoryReservedSchema } from "../../gen/inventory/v1/events_pb.ts";
import { InventoryService } from "../../gen/inventory/v1/inventory_pb.ts";
import { StockReleaseRequestedSchema, StockReservationRequestedSchema } from "../../gen/orders/v1/events_pb.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { newId } from "../../platform/ids.ts";
import type { Platform } from "../../platform/platform.ts";
import { fieldViolations } from "../../platform/rpc/errors.ts";
import { collectEvents } from "../../test/support/events.ts";
import { bootModules, testConfig, waitFor } from "../../test/support/platform.ts";
import inventory from "./index.ts";

const CONSUMER = "inventory.saga";

/** An envelope as the orders module's outbox relay would put it on the bus. */
function envelope<D extends DescMessage>(schema: D, aggregateId: string, init: MessageInitShape<D>, id = newId()): EventEnvelope {
  return { id, type: schema.typeName, source: "orders", aggregateId, payload: toBinary(schema, create(schema, init)), headers: {}, occurredAt: Date.now() };
}
const reserve = (orderId: string, lines: Array<[productId: string, quantity: number]>, id?: string) =>
  envelope(StockReservationRequestedSchema, orderId, { orderId, lines: lines.map(([productId, quantity]) => ({ productId, quantity })) }, id);
const release = (orderId: string, attempt = 1) => envelope(StockReleaseRequestedSchema, orderId, { orderId, attempt });

/** One answer of inventory to the saga, decoded. */
type Outcome = { kind: "reserved" | "released"; orderId: string } | { kind: "failed"; orderId: string; reason: string };
function decode(e: EventEnvelope): Outcome {
  switch (e.type) {
    case InventoryReservedSchema.typeName:
      return { kind: "reserved", orderId: fromBinary(InventoryReservedSchema, e.payload).orderId };
    case InventoryReleasedSchema.typeName:
      return { kind: "released", orderId: fromBinary(InventoryReleasedSchema, e.payload).orderId };
    default: {
      const f = fromBinary(InventoryReservationFailedSchema, e.payload);
      return { kind: "failed", orderId: f.orderId, reason: f.reason };
    }
  }
}

describe("inventory contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let platform: Platform;
  let client: ReturnType<typeof platform.client<typeof InventoryService>>;
  let answers: ReturnType<typeof collectEvents>;
  beforeAll(async () => {
    t = await bootModules([inventory], { modules: { inventory: { snapshotEvery: 100 } } });
    platform = t.platform;
    client = platform.client(InventoryService);
    answers = collectEvents(platform, "inventory", [InventoryReservedSchema.typeName, InventoryReservationFailedSchema.typeName, InventoryReleasedSchema.typeName]);
  });
  afterAll(async () => {
    await answers.stop();
    await t.dispose();
  });

  const publish = (...events: EventEnvelope[]) => platform.bus.publish(events);
  /** Every answer about `orderId` so far, in bus order (per aggregate: publish order). */
  const answersFor = (orderId: string) => answers.events.filter((e) => e.aggregateId === orderId).map(decode);
  /** Waits for the `n`th answer about `orderId`; returns them all. */
  const answered = (orderId: string, n = 1) => waitFor(() => (answersFor(orderId).length >= n ? answersFor(orderId) : undefined), { what: `${n} answers for order ${orderId}` });
  const stock = async (productId: string) => {
    const s = (await client.getStock({ productId })).stock!;
    return { available: Number(s.available), reserved: Number(s.reserved), restocked: Number(s.restocked), version: Number(s.version) };
  };
  const restock = (productId: string, quantity: number) => client.restock({ productId, quantity: BigInt(quantity) });
  const rest = (method: string, path: string, body?: unknown) =>
    platform.fetch(new Request(`http://test${path}`, { method, headers: { "content-type": "application/json" }, ...(body !== undefined && { body: typeof body === "string" ? body : JSON.stringify(body) }) }));
  /** A product's stream as stored: each event's type and payload (proto JSON), oldest first. */
  const stream = async (productId: string) =>
    (await platform.storage("inventory").queryRaw<{ version: number; type: string; payload: string }>("SELECT version, type, payload FROM es_events WHERE stream_id = ? ORDER BY version", [productId])).map((r) => ({
      version: Number(r.version),
      type: r.type.replace("inventory.v1.", ""),
      ...(JSON.parse(r.payload) as { orderId?: string; quantity: string }),
    }));
  /** Folds the stored stream, asserting that no prefix of it has negative stock. */
  const foldChecked = async (productId: string) => {
    let available = 0;
    let reserved = 0;
    for (const e of await stream(productId)) {
      const q = Number(e.quantity);
      if (e.type === "StockRestocked") available += q;
      if (e.type === "StockReserved") (available -= q), (reserved += q);
      if (e.type === "StockReleased") (available += q), (reserved -= q);
      expect({ version: e.version, available: available >= 0, reserved: reserved >= 0 }).toEqual({ version: e.version, available: true, reserved: true });
    }
    return { available, reserved };
  };

  it("restocks and reads a product's stock over RPC and REST; an unknown product has zeros", async () => {
    const p = newId();
    expect((await client.getStock({ productId: p })).stock).toMatchObject({ productId: p, available: 0n, reserved: 0n, restocked: 0n, version: 0n });
    const unknown = await rest("GET", `/api/v1/inventory/${p}`);
    expect([unknown.status, await unknown.json()]).toEqual([200, { productId: p, available: 0, reserved: 0 }]);

    expect((await restock(p, 5)).stock).toMatchObject({ productId: p, available: 5n, reserved: 0n, restocked: 5n, version: 1n });
    const posted = await rest("POST", `/api/v1/inventory/${p}/restock`, { quantity: 3 });
    expect([posted.status, await posted.json()]).toEqual([200, { productId: p, available: 8, reserved: 0 }]);
    const got = await rest("GET", `/api/v1/inventory/${p}`);
    expect([got.status, await got.json()]).toEqual([200, { productId: p, available: 8, reserved: 0 }]);
    expect(await stock(p)).toEqual({ available: 8, reserved: 0, restocked: 8, version: 2 });
    expect((await client.listStock({})).stocks.find((s) => s.productId === p)).toMatchObject({ available: 8n, restocked: 8n, version: 2n });
    expect((await stream(p)).map((e) => [e.version, e.type, e.quantity])).toEqual([
      [1, "StockRestocked", "5"],
      [2, "StockRestocked", "3"],
    ]);
  });

  it("rejects bad input with InvalidArgument / 400 naming the field, and writes nothing", async () => {
    const p = newId();
    for (const [body, field] of [
      [{ quantity: 0 }, "quantity"],
      [{ quantity: -2 }, "quantity"],
      [{ quantity: 1.5 }, "quantity"],
      [{ quantity: "3" }, "quantity"],
      [{ quantity: 1_000_000_001 }, "quantity"],
      [{}, "quantity"],
      [{ quantity: 1, extra: true }, "extra"],
      ["{not json", "(body)"],
    ] as const) {
      const res = await rest("POST", `/api/v1/inventory/${p}/restock`, body);
      const json = (await res.json()) as { error: unknown };
      expect([res.status, JSON.stringify(json)]).toEqual([400, expect.stringContaining(`"${field}"`)]);
    }
    const longId = await rest("POST", `/api/v1/inventory/${"x".repeat(65)}/restock`, { quantity: 1 });
    expect([longId.status, JSON.stringify(await longId.json())]).toEqual([400, expect.stringContaining('"productId"')]);
    expect((await rest("GET", `/api/v1/inventory/${"x".repeat(65)}`)).status).toBe(400);

    const rpcErrors = await Promise.all([
      client.restock({ productId: p, quantity: 0n }).catch((e) => e),
      client.restock({ productId: "", quantity: 1_000_000_001n }).catch((e) => e),
      client.restock({ productId: p, quantity: 2n ** 62n }).catch((e) => e),
      client.getStock({ productId: "" }).catch((e) => e),
    ]);
    expect(rpcErrors.map((e) => [e.code, fieldViolations(e).map((v) => v.field)])).toEqual([
      [Code.InvalidArgument, ["quantity"]],
      [Code.InvalidArgument, ["productId", "quantity"]],
      [Code.InvalidArgument, ["quantity"]],
      [Code.InvalidArgument, ["productId"]],
    ]);
    expect(await stock(p)).toEqual({ available: 0, reserved: 0, restocked: 0, version: 0 });
    expect((await client.listStock({})).stocks.map((s) => s.productId)).not.toContain(p);
    expect(await stream(p)).toEqual([]);
    // The limits themselves are fine.
    expect((await restock(p, 1_000_000_000)).stock?.available).toBe(1_000_000_000n);
    expect((await client.restock({ productId: "y".repeat(64), quantity: 1n })).stock?.productId).toBe("y".repeat(64));
  });

  it("reserves all of an order's lines or none, summing lines of the same product", async () => {
    const [a, b, never] = [newId(), newId(), newId()];
    await restock(a, 5);
    await restock(b, 2);
    const [o1, o2, o3, o4] = [newId(), newId(), newId(), newId()];
    // o1: b is one short, so a is not touched either.
    await publish(reserve(o1, [[a, 3], [b, 3]]));
    expect(await answered(o1)).toEqual([{ kind: "failed", orderId: o1, reason: "out-of-stock" }]);
    expect([await stock(a), await stock(b)]).toEqual([
      { available: 5, reserved: 0, restocked: 5, version: 1 },
      { available: 2, reserved: 0, restocked: 2, version: 1 },
    ]);
    // o2: a twice (2 + 1) and b once; enough of both.
    await publish(reserve(o2, [[a, 2], [b, 1], [a, 1]]));
    expect(await answered(o2)).toEqual([{ kind: "reserved", orderId: o2 }]);
    expect([await stock(a), await stock(b)]).toEqual([
      { available: 2, reserved: 3, restocked: 5, version: 2 },
      { available: 1, reserved: 1, restocked: 2, version: 2 },
    ]);
    expect((await stream(a)).at(-1)).toEqual({ version: 2, type: "StockReserved", orderId: o2, quantity: "3" });
    // o3: 2 of a in two lines of 1 and 2 -> 3 > 2 available. o4: a product never restocked.
    await publish(reserve(o3, [[a, 1], [a, 2]]), reserve(o4, [[b, 1], [never, 1]]));
    expect(await answered(o3)).toEqual([{ kind: "failed", orderId: o3, reason: "out-of-stock" }]);
    expect(await answered(o4)).toEqual([{ kind: "failed", orderId: o4, reason: "out-of-stock" }]);
    expect([await stock(a), await stock(b), await stock(never)]).toEqual([
      { available: 2, reserved: 3, restocked: 5, version: 2 },
      { available: 1, reserved: 1, restocked: 2, version: 2 },
      { available: 0, reserved: 0, restocked: 0, version: 0 },
    ]);
    // A failed order stays failed, even once there is stock for it.
    await restock(b, 10);
    await publish(reserve(o1, [[a, 3], [b, 3]]));
    expect(await answered(o1, 2)).toEqual([
      { kind: "failed", orderId: o1, reason: "out-of-stock" },
      { kind: "failed", orderId: o1, reason: "out-of-stock" },
    ]);
    expect(await stock(a)).toMatchObject({ available: 2, reserved: 3 });
  });

  it("reserves once for a redelivered request and for the same order under a new event id, answering each again", async () => {
    const p = newId();
    await restock(p, 3);
    const o = newId();
    const first = reserve(o, [[p, 2]]);
    await publish(first);
    await publish(first); // the same envelope again: the bus or the inbox drops it
    await publish(reserve(o, [[p, 2]])); // the saga asking again: a new event id, the same order
    await publish(release(o)); // a later event of the order: every answer before it has arrived with it
    const all = await answered(o, 3);
    expect(all).toEqual([
      { kind: "reserved", orderId: o },
      { kind: "reserved", orderId: o },
      { kind: "released", orderId: o },
    ]);
    const reservedEvents = (await stream(p)).filter((e) => e.type === "StockReserved");
    expect(reservedEvents).toEqual([{ version: 2, type: "StockReserved", orderId: o, quantity: "2" }]);
    expect(await stock(p)).toEqual({ available: 3, reserved: 0, restocked: 3, version: 3 });
    expect(await platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });

  it("releases a reservation once, restoring the stock; a repeated release is acknowledged without acting; the order cannot reserve again", async () => {
    const [p, q] = [newId(), newId()];
    await restock(p, 4);
    await restock(q, 1);
    const o = newId();
    await publish(reserve(o, [[p, 3], [q, 1]]));
    expect(await answered(o)).toEqual([{ kind: "reserved", orderId: o }]);
    expect([await stock(p), await stock(q)]).toEqual([
      { available: 1, reserved: 3, restocked: 4, version: 2 },
      { available: 0, reserved: 1, restocked: 1, version: 2 },
    ]);

    await publish(release(o, 1));
    await answered(o, 2);
    expect([await stock(p), await stock(q)]).toEqual([
      { available: 4, reserved: 0, restocked: 4, version: 3 },
      { available: 1, reserved: 0, restocked: 1, version: 3 },
    ]);
    await publish(release(o, 2), reserve(o, [[p, 3], [q, 1]]));
    expect((await answered(o, 4)).slice(2)).toEqual([
      { kind: "released", orderId: o },
      { kind: "failed", orderId: o, reason: "released" },
    ]);
    expect([await stock(p), await stock(q)]).toEqual([
      { available: 4, reserved: 0, restocked: 4, version: 3 },
      { available: 1, reserved: 0, restocked: 1, version: 3 },
    ]);
    expect((await stream(p)).map((e) => [e.type, e.orderId, e.quantity])).toEqual([
      ["StockRestocked", undefined, "4"],
      ["StockReserved", o, "3"],
      ["StockReleased", o, "3"],
    ]);
    // What was given back can be reserved by another order.
    const other = newId();
    await publish(reserve(other, [[p, 4], [q, 1]]));
    expect(await answered(other)).toEqual([{ kind: "reserved", orderId: other }]);
  });

  it("refuses a request whose release came first (reordered saga commands), reserving nothing", async () => {
    const p = newId();
    await restock(p, 5);
    const o = newId();
    await publish(release(o));
    expect(await answered(o)).toEqual([{ kind: "released", orderId: o }]);
    await publish(reserve(o, [[p, 1]]), release(o, 2));
    expect(await answered(o, 3)).toEqual([
      { kind: "released", orderId: o },
      { kind: "failed", orderId: o, reason: "released" },
      { kind: "released", orderId: o },
    ]);
    expect(await stock(p)).toEqual({ available: 5, reserved: 0, restocked: 5, version: 1 });
  });

  it("reserves exactly the last units when many orders race for them: stock never negative, exactly the winners told", async () => {
    const [scarce, plenty] = [newId(), newId()];
    await restock(scarce, 10);
    await restock(plenty, 100);
    const orders = Array.from({ length: 30 }, () => newId());
    // All at once, in three concurrent publishes; each order also takes one of a plentiful product.
    await Promise.all([0, 1, 2].map((k) => publish(...orders.filter((_, i) => i % 3 === k).map((o) => reserve(o, [[plenty, 1], [scarce, 1]])))));
    const outcomes = await waitFor(() => (orders.every((o) => answersFor(o).length > 0) ? orders.map((o) => answersFor(o)) : undefined), { what: "an answer for all 30 orders" });

    expect(outcomes.every((a) => a.length === 1)).toBe(true);
    const winners = outcomes.filter((a) => a[0]!.kind === "reserved").map((a) => a[0]!.orderId);
    const losers = outcomes.filter((a) => a[0]!.kind !== "reserved").map((a) => a[0]!);
    expect(winners).toHaveLength(10);
    expect(losers).toEqual(orders.filter((o) => !winners.includes(o)).map((orderId) => ({ kind: "failed", orderId, reason: "out-of-stock" })));
    expect([await stock(scarce), await stock(plenty)]).toEqual([
      { available: 0, reserved: 10, restocked: 10, version: 11 },
      { available: 90, reserved: 10, restocked: 100, version: 11 },
    ]);
    // Exactly the orders told "reserved" hold units, of both products.
    for (const p of [scarce, plenty]) {
      const held = (await stream(p)).filter((e) => e.type === "StockReserved");
      expect(held.map((e) => e.orderId).sort()).toEqual([...winners].sort());
      expect(held.every((e) => e.quantity === "1")).toBe(true);
    }
    expect(await foldChecked(scarce)).toEqual({ available: 0, reserved: 10 });
    expect(await foldChecked(plenty)).toEqual({ available: 90, reserved: 10 });
  });

  it("keeps every restock when restocks race the saga on one product", async () => {
    const p = newId();
    await restock(p, 5);
    const orders = Array.from({ length: 10 }, () => newId());
    const [restocked] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, () => restock(p, 2))),
      publish(...orders.map((o) => reserve(o, [[p, 3]]))),
    ]);
    expect(restocked).toHaveLength(20);
    await waitFor(() => orders.every((o) => answersFor(o).length > 0), { what: "an answer for all 10 orders" });
    const won = orders.filter((o) => answersFor(o)[0]!.kind === "reserved").length;
    const s = await stock(p);
    expect(s).toEqual({ available: 45 - 3 * won, reserved: 3 * won, restocked: 45, version: 21 + won });
    expect(await foldChecked(p)).toEqual({ available: s.available, reserved: s.reserved });
  });

  it("loads a long stream from its snapshot: 250 events, then a reservation decided without the events the snapshot covers", async () => {
    const p = newId();
    // 250 concurrent restocks of one product: each one lands, one after the other.
    const results = await Promise.all(Array.from({ length: 250 }, () => restock(p, 1)));
    expect(results.map((r) => Number(r.stock!.version)).sort((x, y) => x - y)).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    expect(await stock(p)).toEqual({ available: 250, reserved: 0, restocked: 250, version: 250 });

    const storage = platform.storage("inventory");
    const snaps = await storage.queryRaw<{ version: number; state: string }>("SELECT version, state FROM es_snapshots WHERE stream_id = ?", [p]);
    expect(snaps.map((s) => [Number(s.version), JSON.parse(s.state)])).toEqual([[200, { available: 200, reserved: 0, restocked: 200 }]]);
    // Without the events before the snapshot, the stream still loads whole.
    await storage.queryRaw("DELETE FROM es_events WHERE stream_id = ? AND version <= ?", [p, 200]);
    expect(await stream(p)).toHaveLength(50);

    const [all, oneMore] = [newId(), newId()];
    await publish(reserve(all, [[p, 250]]));
    expect(await answered(all)).toEqual([{ kind: "reserved", orderId: all }]);
    await publish(reserve(oneMore, [[p, 1]]));
    expect(await answered(oneMore)).toEqual([{ kind: "failed", orderId: oneMore, reason: "out-of-stock" }]);
    expect(await stock(p)).toEqual({ available: 0, reserved: 250, restocked: 250, version: 251 });
    expect((await client.restock({ productId: p, quantity: 1n })).stock).toMatchObject({ available: 1n, reserved: 250n, version: 252n });
  });

  it("keeps restocked = available + reserved, none negative, for every product", async () => {
    const { stocks } = await client.listStock({});
    expect(stocks.length).toBeGreaterThan(10);
    for (const s of stocks) {
      expect({ id: s.productId, sum: s.available + s.reserved, nonNegative: s.available >= 0n && s.reserved >= 0n }).toEqual({ id: s.productId, sum: s.restocked, nonNegative: true });
    }
    expect(stocks.map((s) => s.productId)).toEqual([...stocks.map((s) => s.productId)].sort());
    expect(await platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });
});

describe("inventory saga input", () => {
  it("dead-letters a malformed reservation request, changing nothing, and keeps answering later ones", async () => {
    const bus = { ...testConfig({ dataDir: "unused" }).bus, maxDeliver: 2, backoffMs: [10] };
    const t = await bootModules([inventory], { bus });
    try {
      const client = t.platform.client(InventoryService);
      const p = newId();
      await client.restock({ productId: p, quantity: 5n });
      const answers = collectEvents(t.platform, "inventory", [InventoryReservedSchema.typeName, InventoryReservationFailedSchema.typeName]);
      const bad = [reserve(newId(), [[p, 0]]), reserve(newId(), []), reserve("", [[p, 1]])];
      const good = newId();
      await t.platform.bus.publish([...bad, reserve(good, [[p, 2]])]);

      const dead = await waitFor(async () => {
        const d = await t.platform.bus.deadLetters(CONSUMER);
        return d.length === bad.length ? d : undefined;
      }, { what: "three dead letters" });
      const errorOf = new Map(dead.map((d) => [d.envelope.id, d.error]));
      expect(bad.map((e) => errorOf.get(e.id))).toEqual([
        expect.stringMatching(/lines\[0\]\.quantity must be at least 1/),
        expect.stringMatching(/without lines/),
        expect.stringMatching(/without an order id/),
      ]);
      const [answer] = await answers.waitForCount(1);
      expect([answer!.aggregateId, answer!.type]).toEqual([good, InventoryReservedSchema.typeName]);
      expect((await client.getStock({ productId: p })).stock).toMatchObject({ available: 3n, reserved: 2n, version: 2n });
      await answers.stop();
    } finally {
      await t.dispose();
    }
  });
});
