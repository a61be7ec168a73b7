import { rmSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProductCreatedSchema, ProductUpdatedSchema } from "../../gen/catalog/v1/events_pb.ts";
import { CustomerRegisteredSchema } from "../../gen/customers/v1/events_pb.ts";
import { OrderHistoryService } from "../../gen/order_history/v1/order_history_pb.ts";
import { OrderCancelledSchema, OrderConfirmedSchema, OrderCreatedSchema } from "../../gen/orders/v1/events_pb.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { newId } from "../../platform/ids.ts";
import type { Platform } from "../../platform/platform.ts";
import { fieldViolations } from "../../platform/rpc/errors.ts";
import { openSqlite } from "../../platform/storage/sqlite.ts";
import { bootModules, tempDataDir, TEST_TOPOLOGY, testConfig, waitFor } from "../../test/support/platform.ts";
import orderHistory from "./index.ts";

const CONSUMER = "order-history.projection";

/** An envelope as the publishing module's outbox relay would put it on the bus. */
function envelope<D extends DescMessage>(schema: D, source: string, aggregateId: string, init: MessageInitShape<D>, id = newId()): EventEnvelope {
  return { id, type: schema.typeName, source, aggregateId, payload: toBinary(schema, create(schema, init)), headers: {}, occurredAt: Date.now() };
}

/** Publishes envelopes onto the platform's bus; returns their ids. */
async function publish(platform: Platform, ...events: EventEnvelope[]): Promise<string[]> {
  await platform.bus.publish(events);
  return events.map((e) => e.id);
}

/** Resolves once every event id is in the projection's inbox, i.e. its effect is committed. */
function processed(platform: Platform, ids: readonly string[]) {
  const storage = platform.storage("order-history");
  return waitFor(
    async () => {
      const [row] = await storage.queryRaw<{ n: number }>(`SELECT count(*) AS n FROM selaras_inbox WHERE consumer = ? AND event_id IN (${ids.map(() => "?").join(", ")})`, [CONSUMER, ...ids]);
      return Number(row!.n) === ids.length;
    },
    { what: `events ${ids.join(", ")} processed` },
  );
}

const customer = (customerId: string, name: string) => envelope(CustomerRegisteredSchema, "customers", customerId, { customerId, email: `${customerId}@example.com`, name, creditLimitCents: 100_000n });
const product = (productId: string, name: string) => envelope(ProductCreatedSchema, "catalog", productId, { productId, sku: `SKU-${productId}`, name, priceCents: 100n });
const productUpdate = (productId: string, name: string, version: bigint) =>
  envelope(ProductUpdatedSchema, "catalog", productId, { productId, sku: `SKU-${productId}`, name, priceCents: 100n, version });
function order(orderId: string, customerId: string, createdAt: number, lines: Array<[productId: string, quantity: number, unitPriceCents: bigint]>, id?: string) {
  const priced = lines.map(([productId, quantity, unitPriceCents]) => ({ productId, quantity, unitPriceCents, lineTotalCents: BigInt(quantity) * unitPriceCents }));
  const totalCents = priced.reduce((sum, l) => sum + l.lineTotalCents, 0n);
  return envelope(OrderCreatedSchema, "orders", orderId, { orderId, customerId, lines: priced, totalCents, createdAt: timestampFromMs(createdAt) }, id);
}

const confirmed = (orderId: string, customerId: string, totalCents: bigint, id?: string) => envelope(OrderConfirmedSchema, "orders", orderId, { orderId, customerId, totalCents }, id);
const cancelled = (orderId: string, customerId: string, reason: string, id?: string) => envelope(OrderCancelledSchema, "orders", orderId, { orderId, customerId, reason }, id);

/** The consumer's deliveries by result (processed, duplicate, failed). */
async function consumed(platform: Platform, result: string): Promise<number> {
  const { values } = await platform.metrics.eventsConsumed.get();
  return values.find((v) => v.labels.consumer === CONSUMER && v.labels.result === result)?.value ?? 0;
}

describe("order-history contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof OrderHistoryService>>;
  beforeAll(async () => {
    t = await bootModules([orderHistory]);
    client = t.platform.client(OrderHistoryService);
  });
  afterAll(() => t.dispose());

  const history = async (customerId: string) => (await client.listCustomerOrders({ customerId })).orders;

  it("joins customer and product names into each order, newest first", async () => {
    const [c, p1, p2, o1, o2] = [newId(), newId(), newId(), newId(), newId()];
    const at = Date.UTC(2025, 0, 2, 3, 4, 5, 600);
    await publish(t.platform, customer(c, "Ana"), product(p1, "Kopi"), product(p2, "Teh"));
    await publish(t.platform, order(o1, c, at, [[p1, 2, 2500n], [p2, 1, 1000n]]), order(o2, c, at + 1000, [[p2, 3, 1000n]]));

    const orders = await waitFor(async () => {
      const got = await history(c);
      return got.length === 2 && got.every((o) => o.customerName && o.lines.every((l) => l.productName)) ? got : undefined;
    });
    expect(orders.map((o) => o.orderId)).toEqual([o2, o1]);
    expect(orders[1]).toMatchObject({
      orderId: o1,
      customerId: c,
      customerName: "Ana",
      status: "PENDING",
      totalCents: 6000n,
      lines: [
        { productId: p1, productName: "Kopi", quantity: 2, unitPriceCents: 2500n },
        { productId: p2, productName: "Teh", quantity: 1, unitPriceCents: 1000n },
      ],
    });
    expect(timestampMs(orders[1]!.createdAt!)).toBe(at);
  });

  it("gives an unknown customer an empty list and rejects an empty id naming the field", async () => {
    expect(await history(newId())).toEqual([]);
    const err = await client.listCustomerOrders({ customerId: "" }).catch((e) => e);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err).map((v) => v.field)).toEqual(["customerId"]);
  });

  it("shows an order that arrives before its customer and products, then fills in their names", async () => {
    const [c, p, o] = [newId(), newId(), newId()];
    await publish(t.platform, order(o, c, Date.now(), [[p, 1, 700n]]));
    const early = await waitFor(async () => (await history(c))[0]);
    expect(early).toMatchObject({ orderId: o, customerName: "", lines: [{ productId: p, productName: "", quantity: 1, unitPriceCents: 700n }] });

    await publish(t.platform, customer(c, "Budi"), product(p, "Roti"));
    const filled = await waitFor(async () => {
      const [got] = await history(c);
      return got?.customerName && got.lines[0]?.productName ? got : undefined;
    });
    expect(filled).toMatchObject({ orderId: o, customerName: "Budi", lines: [{ productName: "Roti" }] });
  });

  it("reflects a rename and ignores an update that is not newer than the name it has", async () => {
    const [c, p, o] = [newId(), newId(), newId()];
    await publish(t.platform, customer(c, "Citra"), product(p, "Kopi"), order(o, c, Date.now(), [[p, 1, 100n]]));
    const productName = async () => (await history(c))[0]?.lines[0]?.productName;
    await waitFor(async () => (await productName()) === "Kopi", { what: "the product name" });

    await publish(t.platform, productUpdate(p, "Kopi Susu", 2n));
    await waitFor(async () => (await productName()) === "Kopi Susu", { what: "the rename" });

    // Older and equal versions (a late or replayed update) change nothing once processed.
    const stale = await publish(t.platform, productUpdate(p, "Kopi Lama", 1n), productUpdate(p, "Kopi Sama", 2n));
    await processed(t.platform, stale);
    expect(await productName()).toBe("Kopi Susu");

    // A created event arriving after updates (version 1) does not roll the name back either.
    const [recreated] = await publish(t.platform, product(p, "Kopi Awal"));
    await processed(t.platform, [recreated!]);
    expect(await productName()).toBe("Kopi Susu");

    await publish(t.platform, productUpdate(p, "Kopi Luwak", 3n));
    await waitFor(async () => (await productName()) === "Kopi Luwak", { what: "the next rename" });
  });

  it("adds nothing when the same OrderCreated is published again under a new envelope id", async () => {
    const [c, p, o] = [newId(), newId(), newId()];
    const at = Date.now();
    await publish(t.platform, customer(c, "Dewi"), product(p, "Gula"), order(o, c, at, [[p, 1, 100n], [p, 2, 100n]]));
    // A re-publish by the orders module would carry a new id: the inbox cannot catch it, the handler must.
    const again = await publish(t.platform, order(o, c, at, [[p, 1, 100n], [p, 2, 100n]]));
    await processed(t.platform, again);
    const orders = await history(c);
    expect(orders).toHaveLength(1);
    expect(orders[0]!.lines.map((l) => l.quantity)).toEqual([1, 2]);
    expect(await t.platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });

  it("shows the saga's outcome as the order's status: CONFIRMED or CANCELLED", async () => {
    const [c, p, o1, o2, o3] = [newId(), newId(), newId(), newId(), newId()];
    const at = Date.now();
    await publish(t.platform, customer(c, "Hana"), product(p, "Kopi"));
    await publish(t.platform, order(o1, c, at, [[p, 1, 100n]]), order(o2, c, at + 1, [[p, 2, 100n]]), order(o3, c, at + 2, [[p, 3, 100n]]));
    await publish(t.platform, confirmed(o1, c, 100n), cancelled(o2, c, "out-of-stock"));

    const statuses = async () => Object.fromEntries((await history(c)).map((o) => [o.orderId, o.status]));
    const got = await waitFor(async () => {
      const s = await statuses();
      return s[o1] === "CONFIRMED" && s[o2] === "CANCELLED" ? s : undefined;
    }, { what: "both outcomes" });
    // An order the saga has not finished stays PENDING.
    expect(got).toEqual({ [o1]: "CONFIRMED", [o2]: "CANCELLED", [o3]: "PENDING" });
    const res = await t.platform.fetch(new Request(`http://test/api/v1/customers/${c}/orders`));
    const body = (await res.json()) as { orders: Array<{ id: string; status: string; totalCents: number }> };
    expect(body.orders.map((o) => [o.id, o.status, o.totalCents])).toEqual([[o3, "PENDING", 300], [o2, "CANCELLED", 200], [o1, "CONFIRMED", 100]]);
  });

  it("keeps an outcome that arrives before its OrderCreated and shows it once the order is there", async () => {
    const [c, p, o] = [newId(), newId(), newId()];
    await processed(t.platform, await publish(t.platform, cancelled(o, c, "payment-timeout")));
    // No order yet, so nothing to show: the outcome waits for it.
    expect(await history(c)).toEqual([]);

    await processed(t.platform, await publish(t.platform, customer(c, "Indah"), product(p, "Teh"), order(o, c, Date.now(), [[p, 1, 400n]])));
    expect(await history(c)).toMatchObject([{ orderId: o, status: "CANCELLED", customerName: "Indah", totalCents: 400n, lines: [{ productName: "Teh" }] }]);
  });

  it("never moves a final status back: repeated outcomes and a replayed OrderCreated change nothing", async () => {
    const [c, p, o] = [newId(), newId(), newId()];
    const at = Date.now();
    const outcome = confirmed(o, c, 200n);
    await publish(t.platform, customer(c, "Joko"), product(p, "Gula"), order(o, c, at, [[p, 2, 100n]]), outcome);
    await waitFor(async () => (await history(c))[0]?.status === "CONFIRMED", { what: "the confirmation" });

    // The same envelope again, the same outcome under a new event id, the order re-published.
    const again = await publish(t.platform, outcome, confirmed(o, c, 200n), order(o, c, at, [[p, 2, 100n]]));
    await processed(t.platform, again);
    expect(await history(c)).toMatchObject([{ orderId: o, status: "CONFIRMED", totalCents: 200n, lines: [{ quantity: 2 }] }]);
    expect(await history(c)).toHaveLength(1);
    expect(await t.platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });

  it("serves the history over REST with money as JSON numbers", async () => {
    const [c, p, o] = [newId(), newId(), newId()];
    const at = Date.UTC(2025, 5, 1);
    await publish(t.platform, customer(c, "Eka"), product(p, "Susu"), order(o, c, at, [[p, 2, 1250n]]));
    await waitFor(async () => (await history(c))[0]?.lines[0]?.productName === "Susu", { what: "the order with names" });

    const res = await t.platform.fetch(new Request(`http://test/api/v1/customers/${c}/orders`));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      customerId: c,
      orders: [
        {
          id: o,
          status: "PENDING",
          totalCents: 2500,
          customerName: "Eka",
          createdAt: new Date(at).toISOString(),
          lines: [{ productId: p, productName: "Susu", quantity: 2, unitPriceCents: 1250 }],
        },
      ],
    });
    const stranger = newId();
    const unknown = await t.platform.fetch(new Request(`http://test/api/v1/customers/${stranger}/orders`));
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toEqual({ customerId: stranger, orders: [] });
    const bad = await t.platform.fetch(new Request(`http://test/api/v1/customers/${"x".repeat(65)}/orders`));
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain("customerId");
  });
});

describe("order-history delivery guarantees", () => {
  // Rewinds the embedded bus's cursor file; on Postgres + NATS the same window (handler committed,
  // ack lost) is covered by the storage conformance suite's duplicate claims and the e2e kill -9 tests.
  it.skipIf(TEST_TOPOLOGY !== "embedded")("gives a redelivered event no second effect (the bus lost its cursor after the commit)", async () => {
    // The crash window at-least-once delivery leaves open: the handler's transaction (with its
    // inbox entry) committed, the bus cursor did not move. Reproduced by rewinding the cursor of a
    // stopped platform; the restarted one must see every event again and skip each as a duplicate.
    const dataDir = tempDataDir();
    try {
      const [c, p, o] = [newId(), newId(), newId()];
      const events = [customer(c, "Fajar"), product(p, "Beras"), order(o, c, Date.now(), [[p, 5, 300n]])];
      const first = await bootModules([orderHistory], { dataDir });
      await publish(first.platform, ...events);
      await processed(first.platform, events.map((e) => e.id));
      const before = await first.platform.client(OrderHistoryService).listCustomerOrders({ customerId: c });
      await first.dispose();

      const bus = await openSqlite(join(dataDir, "bus.db"), { synchronous: "NORMAL" });
      expect(bus.prepare("UPDATE bus_cursors SET seq = 0 WHERE consumer = ?").run(CONSUMER).changes).toBe(1);
      bus.close();

      const second = await bootModules([orderHistory], { dataDir });
      try {
        await waitFor(async () => (await consumed(second.platform, "duplicate")) === events.length, { what: "three duplicates" });
        expect(await consumed(second.platform, "processed")).toBe(0);
        const [inbox] = await second.platform.storage("order-history").queryRaw<{ n: number }>("SELECT count(*) AS n FROM selaras_inbox WHERE consumer = ?", [CONSUMER]);
        expect(Number(inbox!.n)).toBe(events.length);
        const after = await second.platform.client(OrderHistoryService).listCustomerOrders({ customerId: c });
        expect(after.orders).toEqual(before.orders);
        expect(after.orders[0]).toMatchObject({ customerName: "Fajar", totalCents: 1500n, lines: [{ productName: "Beras", quantity: 5 }] });
      } finally {
        await second.dispose();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("dead-letters an outcome that contradicts the recorded final status, or has no order id, and keeps the first status", async () => {
    const bus = { ...testConfig({ dataDir: "unused" }).bus, maxDeliver: 2, backoffMs: [10] };
    const t = await bootModules([orderHistory], { bus });
    try {
      const [c, p, o] = [newId(), newId(), newId()];
      await publish(t.platform, customer(c, "Kiki"), product(p, "Susu"), order(o, c, Date.now(), [[p, 1, 100n]]), confirmed(o, c, 100n));
      const list = async () => (await t.platform.client(OrderHistoryService).listCustomerOrders({ customerId: c })).orders;
      await waitFor(async () => (await list())[0]?.status === "CONFIRMED", { what: "the confirmation" });

      const contradiction = cancelled(o, c, "stock-timeout");
      const unkeyed = confirmed("", c, 1n);
      const later = confirmed(newId(), c, 1n);
      await publish(t.platform, contradiction, unkeyed, later);
      const dead = await waitFor(async () => {
        const d = await t.platform.bus.deadLetters(CONSUMER);
        return d.length === 2 ? d : undefined;
      }, { what: "two dead letters" });
      expect(dead.map((d) => d.envelope.id).sort()).toEqual([contradiction.id, unkeyed.id].sort());
      expect(dead.find((d) => d.envelope.id === contradiction.id)?.error).toMatch(new RegExp(`order ${o} .*CANCELLED`));
      expect(dead.find((d) => d.envelope.id === unkeyed.id)?.error).toMatch(/without an order id/);
      await processed(t.platform, [later.id]);
      expect(await list()).toMatchObject([{ orderId: o, status: "CONFIRMED" }]);
    } finally {
      await t.dispose();
    }
  });

  it("dead-letters a poison event after maxDeliver attempts and keeps processing later events", async () => {
    const bus = { ...testConfig({ dataDir: "unused" }).bus, maxDeliver: 2, backoffMs: [10] };
    const t = await bootModules([orderHistory], { bus });
    try {
      const [c, p, o] = [newId(), newId(), newId()];
      // One payload that does not decode, one that decodes but has no order id to key it by.
      const undecodable: EventEnvelope = { ...order(newId(), c, Date.now(), []), payload: new Uint8Array([0xff, 0xff, 0xff]) };
      const unkeyed = order("", c, Date.now(), [[p, 1, 1n]]);
      await publish(t.platform, undecodable, unkeyed, customer(c, "Gita"), product(p, "Garam"), order(o, c, Date.now(), [[p, 1, 50n]]));

      const dead = await waitFor(async () => {
        const d = await t.platform.bus.deadLetters(CONSUMER);
        return d.length === 2 ? d : undefined;
      }, { what: "two dead letters" });
      expect(dead.map((d) => d.envelope.id).sort()).toEqual([undecodable.id, unkeyed.id].sort());
      expect(dead.map((d) => d.attempts)).toEqual([2, 2]);
      expect(dead.find((d) => d.envelope.id === unkeyed.id)?.error).toMatch(/without an order id/);
      // An operator sees each one in the log, with the consumer and the event id.
      const logged = t.logs.map((l) => JSON.parse(l)).filter((e) => e.msg === "event dead-lettered");
      expect(logged.map((e) => [e.level, e.consumer, e.eventId].join(" ")).sort()).toEqual([undecodable.id, unkeyed.id].map((id) => `error ${CONSUMER} ${id}`).sort());

      const [got] = await waitFor(async () => {
        const orders = (await t.platform.client(OrderHistoryService).listCustomerOrders({ customerId: c })).orders;
        return orders[0]?.lines[0]?.productName ? orders : undefined;
      });
      expect(got).toMatchObject({ orderId: o, customerName: "Gita", lines: [{ productName: "Garam" }] });
    } finally {
      await t.dispose();
    }
  });
});
