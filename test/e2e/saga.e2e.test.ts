/**
 * The order-placement saga through the public contract, in every topology (harness.ts
 * `TOPOLOGIES`): orders → payments (PaymentProcessed) → inventory (InventoryReserved) → CONFIRMED,
 * and the compensations. Driven only through the REST API, with the payments RPC
 * (`payments.v1.PaymentService`) to read credit and payments:
 *  - happy path: CONFIRMED; the credit goes down by the total, the stock is reserved, exactly one
 *    `order-confirmed` notification, the read model shows CONFIRMED;
 *  - not enough credit: CANCELLED `insufficient-credit`, nothing charged, stock untouched, one
 *    `order-cancelled` notification;
 *  - not enough stock (one line of two): the payment is refunded and the credit restored,
 *    CANCELLED `out-of-stock`, no line reserved;
 *  - 20 customers ordering the last 8 units at once: stock never negative, exactly 8 CONFIRMED,
 *    the others CANCELLED `out-of-stock` with their credit restored;
 *  - every event delivered to every consumer a second time (embedded: the bus cursors rewound to
 *    0; NATS: every durable consumer deleted, so it is recreated delivering the whole stream):
 *    /metrics shows each consumer got as many duplicates as it had processed events, and credit,
 *    stock, payments, notifications, read models, sagas and the row counts of every table are
 *    unchanged;
 *  - the invariant checker (ops/invariants.ts) passes at the end.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentStatus } from "../../gen/payments/v1/payments_pb.ts";
import { SHARED_NATS } from "../support/nats-server.ts";
import { waitFor } from "../support/platform.ts";
import { isBun, startTopology, TOPOLOGIES, type RunningTopology, type Sample } from "./harness.ts";
import { expectSagasDoneAndInvariantsHold, notes, sagaClients, type OrderJson } from "./saga-checks.ts";

interface NotificationJson {
  orderId: string;
  kind: string;
  message: string;
}
interface ReadModelOrder {
  id: string;
  status: string;
  totalCents: number;
}

/** The consumers of the reference system, by `<module>.<subscription>`. */
const CONSUMERS = ["orders.saga", "payments.saga", "inventory.saga", "order-history.projection", "notifications.outcomes", "analytics.sales"];


describe.skipIf(!isBun).each(TOPOLOGIES)("order saga over the public API, %s topology (e2e)", (kind) => {
  let topo: RunningTopology;
  const run = Math.random().toString(36).slice(2, 8);
  // Everything this file created, for the snapshots of the duplicate-delivery test.
  const customers: string[] = [];
  const products: string[] = [];
  const orders: string[] = [];

  beforeAll(async () => {
    topo = await startTopology(kind);
  });
  afterAll(() => topo?.stop());

  // A fresh client each time: a restarted embedded process listens on a new port.
  const rpc = () => sagaClients((m) => topo.serverOf(m).url);

  async function newProduct(tag: string, priceCents: number, stock: number): Promise<string> {
    const r = await topo.api.post("/api/v1/products", { sku: `${run}-${tag}`, name: `Produk ${tag}`, priceCents });
    expect(r.status, r.text).toBe(201);
    const s = await topo.api.post(`/api/v1/inventory/${r.body.id}/restock`, { quantity: stock });
    expect(s.status, s.text).toBe(200);
    expect(s.body).toEqual({ productId: r.body.id, available: stock, reserved: 0 });
    products.push(r.body.id);
    return r.body.id;
  }
  async function newCustomer(tag: string, creditLimitCents: number): Promise<string> {
    const r = await topo.api.post("/api/v1/customers", { email: `${tag}.${run}@example.com`, name: `Pelanggan ${tag}`, creditLimitCents });
    expect(r.status, r.text).toBe(201);
    customers.push(r.body.id);
    return r.body.id;
  }
  async function place(customerId: string, lines: Array<{ productId: string; quantity: number }>): Promise<string> {
    const r = await topo.api.post("/api/v1/orders", { customerId, lines });
    expect(r.status, `${r.text}; last errors: ${lastErrors()}`).toBe(202);
    expect(r.body.status).toBe("PENDING");
    orders.push(r.body.id);
    return r.body.id;
  }
  /** The order once its saga is done (CONFIRMED or CANCELLED); when it is not in time, fails with what the system shows. */
  async function outcome(id: string): Promise<OrderJson> {
    let last: OrderJson | undefined;
    return waitFor(
      async () => {
        const r = await topo.api.get<OrderJson>(`/api/v1/orders/${id}`);
        expect(r.status, r.text).toBe(200);
        last = r.body;
        return (r.body.status === "CONFIRMED" || r.body.status === "CANCELLED") && r.body;
      },
      { timeoutMs: 20_000, what: `order ${id} to be CONFIRMED or CANCELLED` },
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await diagnosis(id, last)}`);
    });
  }
  /** The order's saga and payment, dead letters, lagging consumers and the last warnings: what a stuck saga needs explaining. */
  async function diagnosis(id: string, order: OrderJson | undefined): Promise<string> {
    const pay = await rpc()
      .payments.getPayment({ orderId: id })
      .then((p) => JSON.stringify(p.payment, (_k, v) => (typeof v === "bigint" ? Number(v) : v)))
      .catch((e: Error) => e.message);
    const samples = (await topo.metrics().catch(() => undefined))?.samples ?? [];
    const odd = samples.filter((x) => ["selaras_dead_letters", "selaras_consumer_lag_events", "selaras_outbox_backlog", "selaras_sagas"].includes(x.name) && x.value !== 0);
    return [
      `saga: ${JSON.stringify(order?.saga)}`,
      `payment: ${pay}`,
      `metrics: ${odd.map((x) => `${x.name}${JSON.stringify(x.labels)}=${x.value}`).join(", ")}`,
      `last warnings: ${lastErrors()}`,
    ].join("\n");
  }
  async function stock(productId: string): Promise<{ productId: string; available: number; reserved: number }> {
    const r = await topo.api.get(`/api/v1/inventory/${productId}`);
    expect(r.status, `${r.text}; last errors: ${lastErrors()}`).toBe(200);
    return r.body;
  }
  /** Available credit; waits for the account (on NATS the registration may reach payments after the order). */
  async function credit(customerId: string): Promise<number> {
    const { account } = await waitFor(() => rpc().payments.getAccount({ customerId }), { timeoutMs: 15_000, what: `the payments account of ${customerId}` });
    return Number(account!.availableCents);
  }
  const payment = async (orderId: string) => (await rpc().payments.getPayment({ orderId })).payment!;
  async function notifications(customerId: string): Promise<NotificationJson[]> {
    const r = await topo.api.get(`/api/v1/customers/${customerId}/notifications`);
    expect(r.status, `${r.text}; last errors: ${lastErrors()}`).toBe(200);
    return r.body.notifications;
  }
  async function readModel(customerId: string): Promise<ReadModelOrder[]> {
    const r = await topo.api.get(`/api/v1/customers/${customerId}/orders`);
    expect(r.status, `${r.text}; last errors: ${lastErrors()}`).toBe(200);
    return r.body.orders;
  }
  /** The last error and warning log lines of the topology, for failure messages (a 500 says no more). */
  const lastErrors = () => JSON.stringify(topo.entries().filter((e) => e.level === "warn" || e.level === "error").slice(-3)).slice(0, 2000);
  const settled = () => waitFor(() => topo.settled(), { timeoutMs: 20_000, what: "outboxes drained and consumers caught up" });

  /**
   * Once the outcome has been announced and everything settled: exactly one notification for
   * the order, of `kind`, and the read model shows the order once with `status`.
   */
  async function expectAnnounced(customerId: string, orderId: string, status: "CONFIRMED" | "CANCELLED") {
    const kind = status === "CONFIRMED" ? "order-confirmed" : "order-cancelled";
    await waitFor(async () => (await notifications(customerId)).some((n) => n.orderId === orderId), { timeoutMs: 15_000, what: `the notification of ${orderId}` });
    await waitFor(async () => (await readModel(customerId)).find((o) => o.id === orderId)?.status === status, { timeoutMs: 15_000, what: `${orderId} ${status} in the read model` });
    await settled();
    const mine = (await notifications(customerId)).filter((n) => n.orderId === orderId);
    expect(mine.map((n) => n.kind), `notifications of ${orderId}`).toEqual([kind]);
    expect((await readModel(customerId)).filter((o) => o.id === orderId).map((o) => o.status)).toEqual([status]);
  }

  it("confirms an order: credit charged by the total, stock reserved, one order-confirmed notification, CONFIRMED in the read model", async () => {
    const kopi = await newProduct("kopi", 2500, 10);
    const budi = await newCustomer("budi", 100_000);
    const id = await place(budi, [{ productId: kopi, quantity: 3 }]);

    const o = await outcome(id);
    expect(o).toMatchObject({ id, customerId: budi, status: "CONFIRMED", totalCents: 7500, saga: { state: "CONFIRMED" } });
    expect(o.reason).toBeUndefined();
    expect(notes(o)).toEqual(["order-placed", "payment-processed", "stock-reserved"]);
    expect(await credit(budi)).toBe(100_000 - 7500);
    expect(await payment(id)).toMatchObject({ orderId: id, customerId: budi, amountCents: 7500n, status: PaymentStatus.CAPTURED });
    expect(await stock(kopi)).toEqual({ productId: kopi, available: 7, reserved: 3 });
    await expectAnnounced(budi, id, "CONFIRMED");
    expect((await notifications(budi))[0]).toMatchObject({ orderId: id, kind: "order-confirmed", message: expect.stringContaining(id) });
  });

  it("cancels an order the credit does not cover: insufficient-credit, nothing charged, stock untouched, one order-cancelled notification", async () => {
    const teh = await newProduct("teh", 2500, 10);
    const sari = await newCustomer("sari", 5000);
    const id = await place(sari, [{ productId: teh, quantity: 3 }]);

    const o = await outcome(id);
    expect(o).toMatchObject({ id, status: "CANCELLED", reason: "insufficient-credit", totalCents: 7500, saga: { state: "CANCELLED", reason: "insufficient-credit" } });
    expect(notes(o)).toEqual(["order-placed", "payment-failed"]);
    expect(await payment(id)).toMatchObject({ status: PaymentStatus.FAILED, reason: "insufficient-credit" });
    expect(await credit(sari)).toBe(5000);
    expect(await stock(teh)).toEqual({ productId: teh, available: 10, reserved: 0 });
    await expectAnnounced(sari, id, "CANCELLED");
    // Nothing reached inventory later either.
    expect(await stock(teh)).toEqual({ productId: teh, available: 10, reserved: 0 });
  });

  it("refunds the payment when a line is out of stock: out-of-stock, credit restored, no line reserved", async () => {
    const gula = await newProduct("gula", 1000, 5);
    const beras = await newProduct("beras", 3000, 2);
    const dewi = await newCustomer("dewi", 50_000);
    const id = await place(dewi, [
      { productId: gula, quantity: 1 },
      { productId: beras, quantity: 3 },
    ]);

    const o = await outcome(id);
    expect(o).toMatchObject({ id, status: "CANCELLED", reason: "out-of-stock", totalCents: 10_000, saga: { state: "CANCELLED", reason: "out-of-stock" } });
    // Charged first, then given back: the refund is what restores the credit.
    expect(notes(o)).toEqual(["order-placed", "payment-processed", "stock-failed", "refunded"]);
    expect(await payment(id)).toMatchObject({ amountCents: 10_000n, status: PaymentStatus.REFUNDED });
    expect(await credit(dewi)).toBe(50_000);
    // All or nothing: the line that was in stock is not reserved either.
    expect(await stock(gula)).toEqual({ productId: gula, available: 5, reserved: 0 });
    expect(await stock(beras)).toEqual({ productId: beras, available: 2, reserved: 0 });
    await expectAnnounced(dewi, id, "CANCELLED");
  });

  it("sells the last 8 units once when 20 customers order them at the same time", async () => {
    const UNITS = 8;
    const BUYERS = 20;
    const rendang = await newProduct("rendang", 1500, UNITS);
    const buyers = await Promise.all(Array.from({ length: BUYERS }, (_, i) => newCustomer(`rebut${i}`, 10_000)));

    // Watch the stock the whole time: it must never go below zero, nor reserve more than there is.
    const seen: Array<{ available: number; reserved: number }> = [];
    let racing = true;
    const watcher = (async () => {
      while (racing) seen.push(await stock(rendang));
    })();
    let outcomes: OrderJson[];
    try {
      const ids = await Promise.all(buyers.map((c) => place(c, [{ productId: rendang, quantity: 1 }])));
      outcomes = await Promise.all(ids.map(outcome));
    } finally {
      racing = false;
      await watcher;
    }

    expect(seen.length, "stock observations during the race").toBeGreaterThan(0);
    expect(seen.filter((s) => s.available < 0 || s.reserved > UNITS || s.available + s.reserved !== UNITS), "impossible stock seen").toEqual([]);
    const confirmed = outcomes.filter((o) => o.status === "CONFIRMED");
    const cancelled = outcomes.filter((o) => o.status === "CANCELLED");
    expect(confirmed).toHaveLength(UNITS);
    expect(cancelled).toHaveLength(BUYERS - UNITS);
    expect(cancelled.map((o) => o.reason)).toEqual(Array(BUYERS - UNITS).fill("out-of-stock"));
    expect(await stock(rendang)).toEqual({ productId: rendang, available: 0, reserved: UNITS });
    for (const o of outcomes) {
      expect(await credit(o.customerId), `credit of ${o.customerId} (${o.status})`).toBe(o.status === "CONFIRMED" ? 10_000 - 1500 : 10_000);
    }
    await settled();
    for (const o of outcomes) {
      expect((await notifications(o.customerId)).map((n) => n.kind), `notifications of ${o.customerId}`).toEqual([o.status === "CONFIRMED" ? "order-confirmed" : "order-cancelled"]);
      expect((await readModel(o.customerId)).map((r) => r.status)).toEqual([o.status]);
    }
  });

  it("changes nothing when every consumer receives every event again", { timeout: 120_000 }, async () => {
    // A batch with every outcome, on top of what the tests above left.
    // Four orders of 1 unit fit the stock of 6 whatever their order; 7 units never do; 1000 cents never pay 2000.
    const sate = await newProduct("sate", 2000, 6);
    const batch = await Promise.all(Array.from({ length: 6 }, (_, i) => newCustomer(`ulang${i}`, i === 5 ? 1000 : 20_000)));
    const ids = await Promise.all(batch.map((c, i) => place(c, [{ productId: sate, quantity: i === 4 ? 7 : 1 }])));
    const done = await Promise.all(ids.map(outcome));
    expect(done.map((o) => o.reason ?? o.status)).toEqual(["CONFIRMED", "CONFIRMED", "CONFIRMED", "CONFIRMED", "out-of-stock", "insufficient-credit"]);
    // Every outcome announced and projected before the snapshot: nothing is left to arrive.
    for (const o of done) await expectAnnounced(o.customerId, o.id, o.status as "CONFIRMED" | "CANCELLED");

    const before = await snapshot();
    const consumedBefore = consumed((await topo.metrics()).samples);
    for (const c of CONSUMERS) expect(consumedBefore[c]?.processed ?? 0, `events ${c} processed`).toBeGreaterThan(0);
    const countsBefore = await topo.tableCounts();

    // Stop everything, make every consumer start over from the first event, start again.
    const names = Object.keys(topo.processes);
    for (const name of names) expect(await topo.processes[name]!.stop(), `${name} stops gracefully`).toEqual({ code: 0, signal: null });
    if (kind === "embedded" || kind === "threads") {
      expect(await rewindEmbeddedCursors(join(topo.processes.all!.dataDir, "bus.db")), "consumer cursors rewound").toBe(CONSUMERS.length);
    } else {
      expect(await deleteDurableConsumers(topo.natsPrefix!), "durable consumers deleted").toBeGreaterThanOrEqual(CONSUMERS.length);
    }
    await Promise.all(names.map((name) => topo.restart(name)));

    // Every event each consumer had processed comes again, and is recognised as a duplicate.
    let after: Record<string, Record<string, number>> = {};
    await waitFor(
      async () => {
        after = consumed((await topo.metrics()).samples);
        return CONSUMERS.every((c) => (after[c]?.duplicate ?? 0) >= consumedBefore[c]!.processed!);
      },
      { timeoutMs: 60_000, intervalMs: 100, what: "every event redelivered to every consumer" },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: before ${JSON.stringify(consumedBefore)}, after ${JSON.stringify(after)}`);
    });
    await settled();
    after = consumed((await topo.metrics()).samples);
    for (const c of CONSUMERS) {
      const nonZero = Object.fromEntries(Object.entries(after[c] ?? {}).filter(([, n]) => n !== 0));
      expect({ consumer: c, ...nonZero }, "deliveries after the restart: duplicates only").toEqual({ consumer: c, duplicate: consumedBefore[c]!.processed });
    }

    // No double charge, reservation, notification or projection: the same answers everywhere,
    // and no row written anywhere.
    expect(await snapshot()).toEqual(before);
    expect(await topo.tableCounts()).toEqual(countsBefore);
    await expectSagasDoneAndInvariantsHold(rpc());
  });

  it("the invariant checker passes at the end, every saga done", async () => {
    expect(orders.length).toBeGreaterThan(0);
    const { confirmed, cancelled } = await expectSagasDoneAndInvariantsHold(rpc());
    expect(confirmed + cancelled, "sagas done: one per order placed").toBe(orders.length);
  });

  /** What the public API and the payments RPC say about everything this file created. */
  async function snapshot() {
    const c = rpc();
    const totals = await c.payments.getTotals({});
    const summary = await c.orders.getSagaSummary({});
    return {
      credit: Object.fromEntries(await Promise.all(customers.map(async (id) => [id, await credit(id)]))),
      notifications: Object.fromEntries(await Promise.all(customers.map(async (id) => [id, await notifications(id)]))),
      readModel: Object.fromEntries(await Promise.all(customers.map(async (id) => [id, await readModel(id)]))),
      stock: Object.fromEntries(await Promise.all(products.map(async (id) => [id, await stock(id)]))),
      orders: Object.fromEntries(
        await Promise.all(
          orders.map(async (id) => {
            const r = await topo.api.get(`/api/v1/orders/${id}`);
            expect(r.status, r.text).toBe(200);
            return [id, r.body];
          }),
        ),
      ),
      payments: Object.fromEntries(await Promise.all(orders.map(async (id) => [id, await payment(id)]))),
      totals: { capturedCents: totals.capturedCents, capturedCount: totals.capturedCount, creditUsedCents: totals.creditUsedCents },
      sagas: { states: summary.states.map((s) => [s.state, s.count]), confirmedTotalCents: summary.confirmedTotalCents },
    };
  }
});

/** `selaras_events_consumed_total` of every process, summed by consumer and result. */
function consumed(samples: readonly Sample[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const s of samples) {
    if (s.name !== "selaras_events_consumed_total") continue;
    const c = (out[s.labels.consumer!] ??= {});
    c[s.labels.result!] = (c[s.labels.result!] ?? 0) + s.value;
  }
  return out;
}

/** Sets every consumer's cursor in the embedded bus log back to 0 (the server must be stopped). Returns how many. */
async function rewindEmbeddedCursors(file: string): Promise<number> {
  const specifier = "bun:sqlite"; // in a variable so Node never tries to resolve it
  const { Database } = (await import(specifier)) as typeof import("bun:sqlite");
  const db = new Database(file);
  try {
    return db.run("UPDATE bus_cursors SET seq = 0").changes;
  } finally {
    db.close(true); // closed now, not once its statements are collected: the server opens the file next
  }
}

/**
 * Deletes every durable consumer of the topology's event streams (not the dead-letter stream's).
 * Each is recreated at start with DeliverPolicy.All, so every retained event is delivered again.
 * Returns how many were deleted.
 */
async function deleteDurableConsumers(prefix: string): Promise<number> {
  const nc = await connect({ servers: SHARED_NATS, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    const streams: string[] = [];
    for await (const s of jsm.streams.list()) {
      const name = s.config.name;
      if (name.startsWith(`${prefix.toUpperCase()}_`) && name !== `${prefix.toUpperCase()}_DLQ`) streams.push(name);
    }
    let deleted = 0;
    for (const stream of streams) {
      const durables: string[] = [];
      for await (const c of jsm.consumers.list(stream)) if (c.config.durable_name) durables.push(c.config.durable_name);
      for (const d of durables) {
        await jsm.consumers.delete(stream, d);
        deleted++;
      }
    }
    return deleted;
  } finally {
    await nc.close();
  }
}
