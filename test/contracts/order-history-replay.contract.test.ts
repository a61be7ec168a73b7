import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { OrderHistoryService } from "../../gen/order_history/v1/order_history_pb.ts";
import { OrderCancelledSchema, OrderConfirmedSchema } from "../../gen/orders/v1/events_pb.ts";
import { OrderService } from "../../gen/orders/v1/orders_pb.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import catalog from "../../modules/catalog/index.ts";
import customers from "../../modules/customers/index.ts";
import orderHistory from "../../modules/order-history/index.ts";
import orders from "../../modules/orders/index.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { newId } from "../../platform/ids.ts";
import type { ModuleManifest } from "../../platform/module.ts";
import type { ReplayProgress } from "../../platform/read-models/index.ts";
import { openSqlite } from "../../platform/storage/sqlite.ts";
import { bootModules, TEST_TOPOLOGY, waitFor } from "../support/platform.ts";
import { pgConnect } from "../support/postgres.ts";

// Rebuilding the order-history read model from the retained events while orders keep flowing,
// on the embedded bus + SQLite and (project `postgres`) on NATS + Postgres. The yardstick is a
// twin: a second instance of the same read model under another module name, consuming the same
// events live and never rebuilt. After a rebuild the rebuilt read model must equal the twin.

const READ_MODEL = "order-history.projection";
const TABLES: Record<string, string> = {
  customers: "id",
  products: "id",
  orders: "id",
  order_lines: "order_id, line_no",
  order_status: "order_id",
};

/** order-history's projection under another name: no services or routes, only the read model. */
const twin: ModuleManifest = {
  ...orderHistory,
  name: "history-twin",
  services: [],
  start: async (ctx) => ({ subscriptions: (await orderHistory.start(ctx)).subscriptions }),
};

type Dump = Record<string, string[]>;

/** Every row of every read-model table, as comparable text (drivers differ in number types). */
async function dump(query: (sql: string) => Promise<Array<Record<string, unknown>>>, qualify = (t: string) => t): Promise<Dump> {
  const out: Dump = {};
  for (const [table, key] of Object.entries(TABLES)) {
    const rows = await query(`SELECT * FROM ${qualify(table)} ORDER BY ${key}`);
    out[table] = rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)]))));
  }
  return out;
}

describe("order-history replay", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let placeOrder: (i: number) => Promise<string>;
  let customerIds: string[];
  let productIds: string[];
  const dumpOf = (module: string) => dump((sql) => t.platform.storage(module).queryRaw(sql));

  /** Publishes an order's saga outcome the way orders' relay would (no payments or inventory here). */
  const outcome = (orderId: string, customerId: string, confirmed: boolean): EventEnvelope => {
    const schema = confirmed ? OrderConfirmedSchema : OrderCancelledSchema;
    const payload = confirmed ? toBinary(OrderConfirmedSchema, create(OrderConfirmedSchema, { orderId, customerId, totalCents: 1n })) : toBinary(OrderCancelledSchema, create(OrderCancelledSchema, { orderId, customerId, reason: "out-of-stock" }));
    return { id: newId(), type: schema.typeName, source: "orders", aggregateId: orderId, payload, headers: {}, occurredAt: Date.now() };
  };

  beforeAll(async () => {
    // Sagas wait for payments that never come: keep them from timing out during the test.
    t = await bootModules([catalog, customers, orders, orderHistory, twin], { modules: { orders: { saga: { paymentTimeoutMs: 3_600_000 } } } });
    const products = t.platform.client(CatalogService);
    productIds = [];
    for (const [sku, name] of [["KOPI", "Kopi"], ["TEH", "Teh"], ["GULA", "Gula"]]) productIds.push((await products.createProduct({ sku, name, priceCents: 1000n })).product!.id);
    const people = t.platform.client(CustomerService);
    customerIds = [];
    for (const name of ["Ana", "Budi", "Citra", "Dewi"]) customerIds.push((await people.createCustomer({ email: `${name.toLowerCase()}@example.com`, name, creditLimitCents: 10_000_000n })).customer!.id);
    const client = t.platform.client(OrderService);
    placeOrder = async (i) => {
      const lines = [{ productId: productIds[i % 3]!, quantity: 1 + (i % 4) }, ...(i % 2 === 0 ? [{ productId: productIds[(i + 1) % 3]!, quantity: 2 }] : [])];
      return (await client.placeOrder({ customerId: customerIds[i % 4]!, lines })).order!.id;
    };
    // A history worth rebuilding: a few hundred orders, some with an outcome.
    for (let i = 0; i < 300; i += 10) {
      const ids = await Promise.all(Array.from({ length: 10 }, (_, k) => placeOrder(i + k)));
      await t.platform.bus.publish(ids.filter((_, k) => k % 3 === 0).map((id, k) => outcome(id, customerIds[(i + k * 3) % 4]!, k % 2 === 0)));
    }
    await t.platform.settle(30_000);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  /** Places orders in two loops until stopped, or until `enough(placed so far)` says so. */
  function orderTraffic(enough: (placed: number) => boolean = () => false) {
    let running = true;
    const placed: string[] = [];
    let i = 1000;
    const loops = [0, 1].map(async () => {
      while (running && !enough(placed.length)) placed.push(await placeOrder(i++));
    });
    return {
      placed,
      async stop() {
        running = false;
        await Promise.all(loops);
      },
    };
  }

  /** Reads every customer's history in four loops until stopped; records failures and any shrinking history. */
  function readTraffic() {
    const history = t.platform.client(OrderHistoryService);
    let running = true;
    let reads = 0;
    const failures: string[] = [];
    const seen = new Map<string, number>();
    const loops = [0, 1, 2, 3].map(async (n) => {
      for (let k = n; running; k++) {
        const customerId = customerIds[k % customerIds.length]!;
        // Only reads that completed before this one started bind it: overlapping reads may see either state.
        const floor = seen.get(customerId) ?? 0;
        try {
          const { orders: list } = await history.listCustomerOrders({ customerId });
          reads++;
          if (list.length < floor) failures.push(`${customerId}: ${list.length} orders after ${floor}`);
          seen.set(customerId, Math.max(list.length, seen.get(customerId) ?? 0));
        } catch (err) {
          failures.push((err as Error).message);
        }
        // An in-process read on SQLite resolves without I/O: let the rest of the process run.
        await new Promise((r) => setImmediate(r));
      }
    });
    return {
      failures,
      get reads() {
        return reads;
      },
      async stop() {
        running = false;
        await Promise.all(loops);
      },
    };
  }

  it("rebuilds order-history while orders flow: no read fails, and the result equals the live read model", async () => {
    const phases: ReplayProgress["phase"][] = [];
    let placedBefore = 0;
    // At most 100 orders once the rebuild started: its rounds chase the live consumer, and on a
    // loaded machine the Postgres rebuild applies ~100 events/s, as fast as unbounded traffic adds
    // them — it would end only after its 20 rounds.
    const writes = orderTraffic((placed) => placedBefore > 0 && placed - placedBefore >= 100);
    const reads = readTraffic();
    await waitFor(() => writes.placed.length > 0 && reads.reads > 0, { what: "traffic" });
    let placedDuring = 0;
    let readsDuring = 0;
    let result;
    try {
      result = await t.platform.readModels.replay(READ_MODEL, {
        onProgress: (p) => {
          if (phases.at(-1) !== p.phase) phases.push(p.phase);
          if (phases.length === 1 && placedBefore === 0) placedBefore = writes.placed.length;
        },
      });
      placedDuring = writes.placed.length - placedBefore;
      readsDuring = reads.reads;
    } finally {
      await writes.stop();
      await reads.stop();
    }

    expect(reads.failures).toEqual([]);
    expect(readsDuring).toBeGreaterThan(0);
    expect(placedDuring).toBeGreaterThan(0);
    expect(phases).toEqual(["rebuild", "catch-up", "swap", "done"]);
    expect(result).toMatchObject({ consumer: READ_MODEL, mode: "swapped", record: { consumer: READ_MODEL, untilAt: null, skipped: 0 } });
    // Every order placed before it started, their customers and products, and the outcomes.
    expect(result.record.events).toBeGreaterThanOrEqual(300 + 100 + 4 + 3);

    await t.platform.settle(30_000);
    const live = await dumpOf("history-twin");
    expect(live.orders!.length).toBe(300 + writes.placed.length);
    expect(await dumpOf("order-history")).toEqual(live);

    // The read model's checkpoint and its last rebuild are on record.
    const res = await t.platform.fetch(new Request("http://selaras/admin/v1/read-models"));
    const { readModels } = (await res.json()) as { readModels: Array<{ consumer: string; checkpoint: Record<string, number>; lastRebuild?: { checkpoint: Record<string, number> }; rebuilding: boolean }> };
    const info = readModels.find((r) => r.consumer === READ_MODEL)!;
    expect(info).toMatchObject({ rebuilding: false, lastRebuild: { checkpoint: result.record.checkpoint } });
    for (const [stream, seq] of Object.entries(result.record.checkpoint)) expect(info.checkpoint[stream]).toBeGreaterThanOrEqual(seq);
    expect(readModels.map((r) => r.consumer).sort()).toEqual(["history-twin.projection", READ_MODEL]);
  });

  it("builds the view as of a past moment into a separate copy, over HTTP with progress, leaving the live one alone", async () => {
    await t.platform.settle(30_000);
    const atT = await dumpOf("order-history");
    const until = Date.now();
    await waitFor(() => Date.now() > until, { what: "the clock to pass T" });
    // After T: new orders, a renamed product, an outcome.
    const later = await Promise.all([0, 1, 2, 3, 4].map((k) => placeOrder(5000 + k)));
    await t.platform.client(CatalogService).updateProduct({ id: productIds[0]!, name: "Kopi Luwak" });
    await t.platform.bus.publish([outcome(later[0]!, customerIds[0]!, true)]);
    await t.platform.settle(30_000);
    const now = await dumpOf("order-history");
    expect(now).not.toEqual(atT);

    const res = await t.platform.fetch(new Request(`http://selaras/admin/v1/read-models/${READ_MODEL}/replay?until=${new Date(until).toISOString()}`, { method: "POST" }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>);
    expect(lines[0]).toMatchObject({ event: "started", consumer: READ_MODEL, mode: "point-in-time", until: new Date(until).toISOString() });
    expect(lines.filter((l) => l.event === "progress").map((l) => l.phase)).toContain("done");
    const done = lines.at(-1)!;
    expect(done).toMatchObject({ event: "done", mode: "point-in-time", record: { untilAt: until, skipped: 0 } });

    // The copy equals what the read model showed at T; the live one still shows now.
    const copy = await dumpCopy(done.location as string);
    expect(copy).toEqual(atT);
    expect(await dumpOf("order-history")).toEqual(now);
    expect(await dumpOf("order-history")).toEqual(await dumpOf("history-twin"));
  });

  it("answers 404 for an unknown read model, 409 while one is rebuilding, 400 for a bad time", async () => {
    const post = (path: string) => t.platform.fetch(new Request(`http://selaras/admin/v1/read-models/${path}`, { method: "POST" }));
    expect((await post("nope.projection/replay")).status).toBe(404);
    expect((await post(`${READ_MODEL}/replay?until=yesterday`)).status).toBe(400);
    const running = t.platform.readModels.replay(READ_MODEL);
    const busy = await post(`${READ_MODEL}/replay`);
    expect(busy.status).toBe(409);
    expect(((await busy.json()) as { message: string }).message).toMatch(/being rebuilt already/);
    await running;
  });

  /** The point-in-time copy's tables: a SQLite file, or a Postgres schema (read as the administrator). */
  async function dumpCopy(location: string): Promise<Dump> {
    if (TEST_TOPOLOGY === "embedded") {
      const conn = await openSqlite(location, { synchronous: "NORMAL" });
      try {
        return await dump(async (sql) => conn.prepare(sql).all());
      } finally {
        conn.close();
      }
    }
    const schema = location.replace(/^schema /, "");
    const admin = pgConnect();
    try {
      return await dump(async (sql) => [...(await admin.unsafe(sql))], (table) => `"${schema}"."${table}"`);
    } finally {
      await admin.end();
    }
  }
});
