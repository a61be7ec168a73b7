import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AnalyticsService } from "../../gen/analytics/v1/analytics_pb.ts";
import { OrderCancelledSchema, OrderConfirmedSchema, OrderCreatedSchema } from "../../gen/orders/v1/events_pb.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { changeEnvelope } from "../../platform/cdc/capture-event.ts";
import type { ChangeOp } from "../../platform/cdc/change-event.ts";
import { newId } from "../../platform/ids.ts";
import type { Platform } from "../../platform/platform.ts";
import { fieldViolations } from "../../platform/rpc/errors.ts";
import { bootModules, testConfig, waitFor } from "../../test/support/platform.ts";
import analytics from "./index.ts";

// analytics alone, driven through its client and the bus: the catalog's captured changes are
// put on the bus as the platform's capture would (cross-module with the real capture:
// test/contracts/analytics-cdc.contract.test.ts), order events as orders' relay would.
const CONSUMER = "analytics.sales";

function envelope<D extends DescMessage>(schema: D, aggregateId: string, init: MessageInitShape<D>, occurredAt = Date.now()): EventEnvelope {
  return { id: newId(), type: schema.typeName, source: "orders", aggregateId, payload: toBinary(schema, create(schema, init)), headers: {}, occurredAt };
}

let lsn = 1000;
/** A captured change of a catalog products row, as the platform's capture publishes it. */
function productChange(op: ChangeOp, row: { id: string; name: string; priceCents: number; version: number }, table = "products", module = "catalog"): EventEnvelope {
  const after = { id: row.id, sku: `SKU-${row.id}`, name: row.name, price_cents: row.priceCents, version: row.version, created_at: 1, updated_at: 1 };
  const at = Date.now();
  lsn += 10;
  return changeEnvelope({
    id: newId(),
    op,
    before: op === "c" || op === "r" ? null : after,
    after: op === "d" ? null : after,
    key: row.id,
    source: { connector: "sqlite", db: `${module}.db`, schema: "main", table, module, lsn, commitLsn: lsn, txId: 0, tsMs: at, snapshot: op === "r" },
  });
}

function orderCreated(orderId: string, lines: Array<[productId: string, quantity: number, unitPriceCents: number]>, createdAt = Date.now()) {
  const priced = lines.map(([productId, quantity, unit]) => ({ productId, quantity, unitPriceCents: BigInt(unit), lineTotalCents: BigInt(quantity * unit) }));
  const totalCents = priced.reduce((n, l) => n + l.lineTotalCents, 0n);
  return envelope(OrderCreatedSchema, orderId, { orderId, customerId: "c1", lines: priced, totalCents, createdAt: timestampFromMs(createdAt) });
}
const orderConfirmed = (orderId: string, at: number) => envelope(OrderConfirmedSchema, orderId, { orderId, customerId: "c1", totalCents: 0n }, at);

async function publish(platform: Platform, ...events: EventEnvelope[]): Promise<string[]> {
  await platform.bus.publish(events);
  return events.map((e) => e.id);
}

/** Resolves once every event id is in the consumer's inbox, i.e. its effect is committed. */
function processed(platform: Platform, ids: readonly string[]) {
  const storage = platform.storage("analytics");
  return waitFor(
    async () => {
      const [row] = await storage.queryRaw<{ n: number }>(`SELECT count(*) AS n FROM selaras_inbox WHERE consumer = ? AND event_id IN (${ids.map(() => "?").join(", ")})`, [CONSUMER, ...ids]);
      return Number(row!.n) === ids.length;
    },
    { what: `events ${ids.join(", ")} processed` },
  );
}

const utc = (day: string, time = "12:00:00.000") => Date.parse(`${day}T${time}Z`);

describe("analytics contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof AnalyticsService>>;
  beforeAll(async () => {
    t = await bootModules([analytics]);
    client = t.platform.client(AnalyticsService);
  });
  afterAll(() => t.dispose());

  const daily = async (day: string) => (await client.listDailySales({ day })).products;
  const plain = (list: Awaited<ReturnType<typeof daily>>) => list.map((d) => ({ productId: d.productId, productName: d.productName, unitsSold: Number(d.unitsSold), revenueCents: Number(d.revenueCents), orders: Number(d.orders) }));

  it("counts a confirmed order per product on its confirmation's UTC day, with names from the captured products", async () => {
    const [kopi, teh, o] = [newId(), newId(), newId()];
    const day = "2025-01-01";
    await processed(t.platform, await publish(t.platform, productChange("c", { id: kopi, name: "Kopi", priceCents: 2500, version: 1 }), productChange("c", { id: teh, name: "Teh", priceCents: 1000, version: 1 })));
    // Placed the day before, confirmed on `day`: the sale counts on `day`.
    await publish(t.platform, orderCreated(o, [[kopi, 2, 2500], [teh, 1, 1000], [kopi, 1, 2400]], utc("2024-12-31", "23:00:00.000")), orderConfirmed(o, utc(day)));

    const got = await waitFor(async () => {
      const d = await daily(day);
      return d.length === 2 ? d : undefined;
    }, { what: "two products sold" });
    expect(plain(got)).toEqual([
      { productId: kopi, productName: "Kopi", unitsSold: 3, revenueCents: 7400, orders: 1 },
      { productId: teh, productName: "Teh", unitsSold: 1, revenueCents: 1000, orders: 1 },
    ]);
    expect(await daily("2024-12-31")).toEqual([]);
  });

  it("counts an order whose confirmation arrives before its OrderCreated, once it does", async () => {
    const [p, o] = [newId(), newId()];
    const day = "2025-01-02";
    await processed(t.platform, await publish(t.platform, orderConfirmed(o, utc(day))));
    expect(await daily(day)).toEqual([]);

    await processed(t.platform, await publish(t.platform, orderCreated(o, [[p, 4, 300]])));
    // The product is not captured yet: its name shows as "" until it is.
    expect(plain(await daily(day))).toEqual([{ productId: p, productName: "", unitsSold: 4, revenueCents: 1200, orders: 1 }]);
    await processed(t.platform, await publish(t.platform, productChange("r", { id: p, name: "Gula", priceCents: 300, version: 1 })));
    expect((await daily(day))[0]?.productName).toBe("Gula");
  });

  it("leaves out orders that are not confirmed", async () => {
    const [p, pending, cancelled, sold] = [newId(), newId(), newId(), newId()];
    const day = "2025-01-03";
    await processed(t.platform, await publish(t.platform, orderCreated(pending, [[p, 1, 100]], utc(day)), orderCreated(cancelled, [[p, 2, 100]], utc(day)), orderCreated(sold, [[p, 3, 100]], utc(day))));
    // analytics does not subscribe to cancellations: a cancelled order is simply never confirmed.
    await publish(t.platform, envelope(OrderCancelledSchema, cancelled, { orderId: cancelled, customerId: "c1", reason: "out-of-stock" }, utc(day)));
    await processed(t.platform, await publish(t.platform, orderConfirmed(sold, utc(day))));
    expect(plain(await daily(day))).toEqual([{ productId: p, productName: "", unitsSold: 3, revenueCents: 300, orders: 1 }]);
  });

  it("counts each order once: a redelivered envelope or a re-publish under a new id changes nothing", async () => {
    const [p, o] = [newId(), newId()];
    const day = "2025-01-04";
    const created = orderCreated(o, [[p, 2, 500]]);
    const confirmed = orderConfirmed(o, utc(day));
    await processed(t.platform, await publish(t.platform, created, confirmed));
    // The same envelopes again (the bus deduplicates or the inbox skips them), then the same
    // facts under new event ids (the handlers see facts they already have).
    await publish(t.platform, created, confirmed);
    const again = await publish(t.platform, { ...created, id: newId() }, { ...confirmed, id: newId(), occurredAt: utc("2025-01-05") });
    await processed(t.platform, again);
    expect(plain(await daily(day))).toEqual([{ productId: p, productName: "", unitsSold: 2, revenueCents: 1000, orders: 1 }]);
    expect(await daily("2025-01-05")).toEqual([]);
    expect(await t.platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });

  it("keeps the newest captured name and price; a late or deleted row does not roll them back", async () => {
    const [p, o] = [newId(), newId()];
    const day = "2025-01-06";
    await processed(t.platform, await publish(t.platform, orderCreated(o, [[p, 1, 900]]), orderConfirmed(o, utc(day)), productChange("c", { id: p, name: "Kopi", priceCents: 900, version: 1 })));
    const sales = () => client.getProductSales({ productId: p, fromDay: day, toDay: day });
    expect(await sales()).toMatchObject({ productName: "Kopi", priceCents: 900n });

    await processed(t.platform, await publish(t.platform, productChange("u", { id: p, name: "Kopi Susu", priceCents: 1200, version: 2 })));
    expect(await sales()).toMatchObject({ productName: "Kopi Susu", priceCents: 1200n, totalRevenueCents: 900n });
    // A snapshot read or a replayed older change, then the row deleted: name and price stay.
    await processed(t.platform, await publish(t.platform, productChange("r", { id: p, name: "Kopi", priceCents: 900, version: 1 }), productChange("d", { id: p, name: "Kopi Susu", priceCents: 1200, version: 2 })));
    expect(await sales()).toMatchObject({ productName: "Kopi Susu", priceCents: 1200n });
  });

  it("ignores captured changes of other tables", async () => {
    const p = newId();
    await processed(t.platform, await publish(t.platform, productChange("c", { id: p, name: "Elsewhere", priceCents: 1, version: 1 }, "products", "warehouse"), productChange("c", { id: p, name: "Other", priceCents: 1, version: 1 }, "prices")));
    expect(await client.getProductSales({ productId: p, fromDay: "2025-01-01", toDay: "2025-01-01" })).toMatchObject({ productName: "", priceCents: 0n });
  });

  it("splits sales at UTC midnight and serves a product's days over a range", async () => {
    const [p, o1, o2, o3] = [newId(), newId(), newId(), newId()];
    await processed(
      t.platform,
      await publish(
        t.platform,
        productChange("c", { id: p, name: "Roti", priceCents: 100, version: 1 }),
        orderCreated(o1, [[p, 1, 100]]),
        orderCreated(o2, [[p, 2, 100]]),
        orderCreated(o3, [[p, 4, 100]]),
        orderConfirmed(o1, utc("2025-02-01", "23:59:59.999")),
        orderConfirmed(o2, utc("2025-02-02", "00:00:00.000")),
        orderConfirmed(o3, utc("2025-02-05", "08:00:00.000")),
      ),
    );
    const range = await client.getProductSales({ productId: p, fromDay: "2025-01-31", toDay: "2025-02-04" });
    expect(range).toMatchObject({ productId: p, productName: "Roti", priceCents: 100n, totalUnitsSold: 3n, totalRevenueCents: 300n });
    expect(range.days.map((d) => [d.day, Number(d.unitsSold), Number(d.revenueCents), Number(d.orders)])).toEqual([["2025-02-01", 1, 100, 1], ["2025-02-02", 2, 200, 1]]);
    // Inclusive at both ends.
    const one = await client.getProductSales({ productId: p, fromDay: "2025-02-05", toDay: "2025-02-05" });
    expect(one.days.map((d) => d.day)).toEqual(["2025-02-05"]);
    expect((await client.getProductSales({ productId: newId(), fromDay: "2025-02-01", toDay: "2025-02-05" })).days).toEqual([]);
  });

  it("serves REST with money and counts as JSON numbers", async () => {
    const [p, o] = [newId(), newId()];
    const day = "2025-03-01";
    await processed(t.platform, await publish(t.platform, productChange("c", { id: p, name: "Susu", priceCents: 1250, version: 1 }), orderCreated(o, [[p, 2, 1250]]), orderConfirmed(o, utc(day))));

    const res = await t.platform.fetch(new Request(`http://test/api/v1/analytics/products/${p}/sales?from=2025-02-28&to=${day}`));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      productId: p,
      productName: "Susu",
      priceCents: 1250,
      from: "2025-02-28",
      to: day,
      totalUnitsSold: 2,
      totalRevenueCents: 2500,
      days: [{ day, unitsSold: 2, revenueCents: 2500, orders: 1 }],
    });
    const list = await t.platform.fetch(new Request(`http://test/api/v1/analytics/sales?day=${day}`));
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual({ day, products: [{ productId: p, productName: "Susu", unitsSold: 2, revenueCents: 2500, orders: 1 }] });
  });

  it("rejects bad days and ranges with a 400 (REST) or InvalidArgument (RPC) naming the field", async () => {
    const fields = async (path: string) => {
      const res = await t.platform.fetch(new Request(`http://test${path}`));
      expect(res.status).toBe(400);
      return JSON.stringify(await res.json());
    };
    expect(await fields("/api/v1/analytics/products/p1/sales?from=2025-13-01&to=2025-12-31")).toContain('"from"');
    expect(await fields("/api/v1/analytics/products/p1/sales?from=2025-02-01&to=2025-01-31")).toMatch(/"to".*must not be before from/);
    expect(await fields("/api/v1/analytics/products/p1/sales?from=2024-01-01&to=2025-12-31")).toMatch(/"to".*at most 366 days/);
    expect(await fields("/api/v1/analytics/products/p1/sales?from=2025-01-01")).toContain('"to"');
    expect(await fields("/api/v1/analytics/sales")).toContain('"day"');
    expect(await fields("/api/v1/analytics/sales?day=2025-02-30")).toContain('"day"');
    expect(await fields("/api/v1/analytics/sales?day=2025-02-03&limit=5")).toContain('"limit"');

    const rpc = async (call: Promise<unknown>) => {
      const err = (await call.catch((e) => e)) as Parameters<typeof fieldViolations>[0];
      expect(err.code).toBe(Code.InvalidArgument);
      return fieldViolations(err).map((v) => v.field);
    };
    expect(await rpc(client.getProductSales({ productId: "", fromDay: "2025-01-01", toDay: "2025-01-02" }))).toEqual(["productId"]);
    expect(await rpc(client.getProductSales({ productId: "p", fromDay: "01/01/2025", toDay: "2025-01-02" }))).toEqual(["fromDay"]);
    expect(await rpc(client.getProductSales({ productId: "p", fromDay: "2025-01-03", toDay: "2025-01-02" }))).toEqual(["toDay"]);
    expect(await rpc(client.listDailySales({ day: "" }))).toEqual(["day"]);
  });
});

describe("analytics delivery guarantees", () => {
  it("dead-letters a captured products row it cannot read, and an order without an id, and goes on", async () => {
    const bus = { ...testConfig({ dataDir: "unused" }).bus, maxDeliver: 2, backoffMs: [10] };
    const t = await bootModules([analytics], { bus });
    try {
      const [p, o] = [newId(), newId()];
      const broken = productChange("c", { id: p, name: "Kopi", priceCents: 1.5, version: 1 });
      const unkeyed = orderCreated("", [[p, 1, 1]]);
      await publish(t.platform, broken, unkeyed, orderCreated(o, [[p, 1, 700]]), orderConfirmed(o, utc("2025-04-01")));
      const dead = await waitFor(async () => {
        const d = await t.platform.bus.deadLetters(CONSUMER);
        return d.length === 2 ? d : undefined;
      }, { what: "two dead letters" });
      expect(dead.map((d) => d.envelope.id).sort()).toEqual([broken.id, unkeyed.id].sort());
      expect(dead.find((d) => d.envelope.id === broken.id)?.error).toMatch(/price_cents/);
      const sold = await waitFor(async () => (await t.platform.client(AnalyticsService).listDailySales({ day: "2025-04-01" })).products[0]);
      expect(sold).toMatchObject({ productId: p, unitsSold: 1n, revenueCents: 700n });
    } finally {
      await t.dispose();
    }
  });
});
