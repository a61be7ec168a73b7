/**
 * Faults of the split topology (config/split.json: core, orders, payments, inventory, history) on
 * the test Postgres and a private nats-server (test/support/nats-server.ts), which these tests stop
 * and restart without disturbing the shared one. Stock and credit are ample, so every order's saga
 * must end CONFIRMED. Orders are placed by concurrent clients, each request with its own
 * Idempotency-Key, while:
 *  1. NATS is stopped and started again: orders are still accepted (202) while it is down, their
 *     events wait in the outbox (/metrics shows the backlog), and every one reaches the read model
 *     once NATS is back;
 *  2. the consumer process (history) is killed with SIGKILL and restarted;
 *  3. (no load) a poison event on a subject order-history (and payments) consume lands in the
 *     dead-letter stream, `dead-letters list` shows it with its error, and `dead-letters redrive`
 *     delivers it again; a handler failure that is then fixed is re-driven into the read model,
 *     where the order's outcome, which arrived first, is kept;
 *  4. the orders process gets SIGTERM: it exits 0 after publishing its outbox.
 * After each fault the test proves exactly-once end to end, per test (each has its own customers):
 * the read model (`GET /api/v1/customers/{id}/orders`) lists every acknowledged order exactly
 * once, CONFIRMED, and nothing else; the orders and order-history schemas hold the same ids and
 * totals; each customer's credit went down by exactly the totals of their orders. At the end, every
 * product's reservations equal what all the file's orders ordered, and the invariant checker
 * (ops/invariants.ts) passes.
 *
 * The topology file is patched for the time budget only: `bus.nats.leaseSeconds` 2 (default 10: a
 * killed consumer's partitions are taken over after it), `bus.nats.ackWaitSeconds` 2 (default 30) and `bus.maxDeliver` 3 with short
 * `bus.backoffMs` (a poison event reaches the dead-letter stream in ~0.3 s instead of ~12 s); and
 * the saga's deadlines are far beyond the test's length: on a slow machine an order kept waiting by
 * a fault would rightly time out and cancel, which is saga-faults.e2e.test.ts's subject, not this one's.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { connect, headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventSubject } from "../../platform/bus/nats/names.ts";
import { NatsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/platform.ts";
import { pgConnect } from "../support/postgres.ts";
import { isBun, parseMetrics, repoRoot, startTopology, type RunningServer, type RunningTopology } from "./harness.ts";
import { expectSagasDoneAndInvariantsHold, sagaClients } from "./saga-checks.ts";

const CLIENTS = 6;
const REQUEST_TIMEOUT_MS = 15_000;
const MAX_DELIVER = 3;
const CONSUMER = "order-history.projection";
const CREDIT_LIMIT_CENTS = 1_000_000_000_000;
const STOCK = 1_000_000;

interface OrderBody {
  customerId: string;
  lines: Array<{ productId: string; quantity: number }>;
}

const randomInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

/** `bun main.ts --config FILE --process NAME …args`, to completion. */
function cli(configFile: string, processName: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SELARAS_")) env[k] = v;
  const child = spawn("bun", ["main.ts", "--config", configFile, "--process", processName, ...args], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, out: out.trim(), err: err.trim() })));
}

describe.skipIf(!isBun)("faults of the split topology on Postgres + NATS (e2e)", () => {
  let nats: NatsServer;
  let topo: RunningTopology;
  const run = Math.random().toString(36).slice(2, 8);
  const prices = new Map<string, number>();
  /** Orders placed outside a load (for the final check, with every load's acknowledged orders). */
  const otherOrders: OrderBody[] = [];
  const loads: Array<{ acked: Map<string, { body: OrderBody }> }> = [];

  beforeAll(async () => {
    nats = await NatsServer.start();
    topo = await startTopology("split", {
      nats: nats.url,
      patch: (c) => {
        c.bus.maxDeliver = MAX_DELIVER;
        c.bus.backoffMs = [100, 200];
        c.bus.nats.ackWaitSeconds = 2;
        c.bus.nats.leaseSeconds = 2;
        c.modules = { ...c.modules, orders: { ...c.modules?.orders, saga: { paymentTimeoutMs: 600_000, stockTimeoutMs: 600_000 } } };
      },
    });
    for (const [i, price] of [1250, 399, 10_000].entries()) {
      const r = await topo.api.post("/api/v1/products", { sku: `${run}-faults-${i}`, name: `Produk ${i}`, priceCents: price });
      expect(r.status, r.text).toBe(201);
      prices.set(r.body.id, price);
      const s = await topo.api.post(`/api/v1/inventory/${r.body.id}/restock`, { quantity: STOCK });
      expect(s.status, s.text).toBe(200);
    }
  });
  afterAll(async () => {
    // stop() deletes this run's streams, which needs the server up even when a test failed with it down.
    if (nats && !nats.running) await nats.restart().catch(() => {});
    await topo?.stop();
    await nats?.dispose();
  });

  const newCustomers = async (tag: string, n = 3) => {
    const out: Array<{ id: string; name: string }> = [];
    for (let i = 0; i < n; i++) {
      const r = await topo.api.post("/api/v1/customers", { email: `${tag}${i}.${run}@example.com`, name: `Pelanggan ${tag} ${i}`, creditLimitCents: CREDIT_LIMIT_CENTS });
      expect(r.status, r.text).toBe(201);
      out.push({ id: r.body.id, name: r.body.name });
    }
    return out;
  };
  const expectedTotal = (b: OrderBody) => b.lines.reduce((sum, l) => sum + prices.get(l.productId)! * l.quantity, 0);

  /** A process's gauge samples named `name`, from its /metrics. */
  const gauge = async (srv: RunningServer, name: string) => parseMetrics(await (await fetch(`${srv.url}/metrics`)).text()).filter((s) => s.name === name);

  /**
   * Concurrent clients placing orders for `customers` until `halt()`. Each answer is recorded with
   * the phase it was sent in; a request without a 202 stays `pending` (retried by `retryPending`).
   */
  function startLoad(tag: string, customers: Array<{ id: string }>) {
    const productIds = [...prices.keys()];
    const acked = new Map<string, { id: string; body: OrderBody; sentIn: string; ackedIn: string }>();
    const pending = new Map<string, OrderBody>();
    const unexpected: string[] = [];
    const connectionErrors: Array<{ key: string; sentIn: string; error: string }> = [];
    const state = { phase: "start", halted: false, replayed: 0, inFlight: 0 };
    const place = (key: string, body: OrderBody) => topo.api.post("/api/v1/orders", body, { headers: { "Idempotency-Key": key }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const send = async (key: string) => {
      const picked = [...productIds].sort(() => Math.random() - 0.5).slice(0, randomInt(1, productIds.length));
      const body: OrderBody = { customerId: customers[randomInt(0, customers.length - 1)]!.id, lines: picked.map((productId) => ({ productId, quantity: randomInt(1, 5) })) };
      const sentIn = state.phase;
      pending.set(key, body);
      state.inFlight++;
      try {
        const r = await place(key, body);
        if (r.status === 202 && r.body?.status === "PENDING") {
          acked.set(key, { id: r.body.id, body, sentIn, ackedIn: state.phase });
          pending.delete(key);
        } else {
          unexpected.push(`${key} (sent in ${sentIn}): ${r.status} ${r.text.slice(0, 200)}`);
        }
      } catch (err) {
        const e = err as Error & { code?: string };
        connectionErrors.push({ key, sentIn, error: `${e.code ?? e.name}: ${e.message}` });
      } finally {
        state.inFlight--;
      }
    };
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      for (let n = 0; !state.halted; n++) await send(`${run}-${tag}-c${c}-${n}`);
    });
    const extra: Array<Promise<void>> = [];
    loads.push({ acked });
    return {
      acked,
      pending,
      /** Sends `n` more requests at once, outside the clients' loops (awaited by `halt`). */
      burst(n: number) {
        for (let i = 0; i < n; i++) extra.push(send(`${run}-${tag}-burst-${extra.length}`));
      },
      unexpected,
      connectionErrors,
      state,
      /** Acknowledged orders sent and answered in `phase`. */
      ackedWithin: (phase: string) => [...acked.values()].filter((a) => a.sentIn === phase && a.ackedIn === phase).length,
      /** Stops sending and waits for the requests in flight. */
      async halt() {
        state.halted = true;
        await Promise.all([...clients, ...extra]);
      },
      /** Re-sends each request that got no 202, with its key and body, as a client would: the answer is final. */
      async retryPending() {
        for (const [key, body] of [...pending]) {
          const r = await place(key, body);
          if (r.status !== 202) throw new Error(`retry of ${key} answered ${r.status}: ${r.text}`);
          if (r.headers.get("idempotent-replayed") === "true") state.replayed++;
          acked.set(key, { id: r.body.id, body, sentIn: "retry", ackedIn: "retry" });
          pending.delete(key);
        }
      },
    };
  }
  type Load = ReturnType<typeof startLoad>;

  /** Order ids (with totals) of `customers` in a module's Postgres schema, read as the administrator. */
  async function schemaOrders(module: "orders" | "order_history", customers: Array<{ id: string }>): Promise<Map<string, number>> {
    const admin = pgConnect();
    try {
      const rows = await admin.unsafe<Array<{ id: string; total_cents: string }>>(`SELECT id, total_cents FROM "${topo.pgPrefix}_${module}".orders WHERE customer_id = ANY($1)`, [customers.map((c) => c.id)]);
      return new Map(rows.map((r) => [r.id, Number(r.total_cents)]));
    } finally {
      await admin.end();
    }
  }

  /** The read model over the public API: how often each order is listed, with its total and customer. */
  async function readModel(customers: Array<{ id: string; name: string }>) {
    const seen = new Map<string, { n: number; status: string; totalCents: number; customerId: string; customerName: string }>();
    for (const c of customers) {
      const r = await topo.api.get(`/api/v1/customers/${c.id}/orders`);
      expect(r.status, r.text).toBe(200);
      for (const o of r.body.orders as Array<{ id: string; status: string; totalCents: number; customerName: string }>) {
        const prev = seen.get(o.id);
        seen.set(o.id, { n: (prev?.n ?? 0) + 1, status: o.status, totalCents: o.totalCents, customerId: c.id, customerName: o.customerName });
      }
    }
    return seen;
  }

  /**
   * Exactly once, end to end: once the read model holds every acknowledged order and the topology
   * has settled, it lists each exactly once, under its customer, with its total, and nothing
   * unacknowledged; the orders and order-history schemas hold exactly the same ids and totals.
   */
  async function expectExactlyOnce(load: Load, customers: Array<{ id: string; name: string }>) {
    expect(load.pending.size, "requests without a 202 after the retries").toBe(0);
    const ackedIds = [...load.acked.values()].map((a) => a.id);
    expect(new Set(ackedIds).size, "one order per idempotency key").toBe(load.acked.size);
    await waitFor(
      async () => {
        const seen = await readModel(customers);
        return ackedIds.every((id) => seen.has(id));
      },
      { timeoutMs: 30_000, intervalMs: 200, what: `all ${ackedIds.length} acknowledged orders in the read model` },
    );
    // Stock and credit are ample: every saga confirms its order, and the read model shows it.
    let unconfirmed: string[] = [];
    await waitFor(
      async () => {
        const seen = await readModel(customers);
        unconfirmed = [...seen].filter(([, v]) => v.status !== "CONFIRMED").map(([id, v]) => `${id}: ${v.status}`);
        return unconfirmed.length === 0;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: "every acknowledged order CONFIRMED in the read model" },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${unconfirmed.length} not confirmed, e.g. ${unconfirmed.slice(0, 5).join(", ")}`);
    });
    await waitFor(() => topo.settled(), { timeoutMs: 20_000, intervalMs: 100, what: "outbox backlog and consumer lag to reach 0" });

    const seen = await readModel(customers);
    const byId = new Map([...load.acked.values()].map((a) => [a.id, a]));
    expect([...seen.keys()].filter((id) => !byId.has(id)), "read-model orders never acknowledged").toEqual([]);
    expect([...seen].filter(([, v]) => v.n !== 1).map(([id]) => id), "orders listed more than once").toEqual([]);
    for (const [id, v] of seen) {
      const a = byId.get(id)!;
      expect(v.customerId, `customer of ${id}`).toBe(a.body.customerId);
      expect(v.totalCents, `total of ${id}`).toBe(expectedTotal(a.body));
      expect(v.customerName, `customer name on ${id}`).toBe(customers.find((c) => c.id === a.body.customerId)!.name);
    }
    expect([...seen.keys()].sort()).toEqual([...ackedIds].sort());

    const inOrders = await schemaOrders("orders", customers);
    const inHistory = await schemaOrders("order_history", customers);
    expect([...inOrders.keys()].sort(), "orders schema holds exactly the acknowledged orders").toEqual([...ackedIds].sort());
    expect([...inHistory.keys()].sort(), "order-history schema holds exactly the orders of the orders schema").toEqual([...inOrders.keys()].sort());
    for (const [id, total] of inOrders) expect(inHistory.get(id), `history total of ${id}`).toBe(total);

    // Charged exactly once per order, whatever the fault: each customer's credit went down by the
    // totals of their orders.
    const payments = sagaClients((m) => topo.serverOf(m).url).payments;
    for (const c of customers) {
      const charged = [...load.acked.values()].filter((a) => a.body.customerId === c.id).reduce((sum, a) => sum + expectedTotal(a.body), 0);
      const { account } = await payments.getAccount({ customerId: c.id });
      expect(Number(account!.availableCents), `available credit of ${c.name}`).toBe(CREDIT_LIMIT_CENTS - charged);
    }
  }

  it("accepts orders while NATS is down (events wait in the outbox) and delivers every one exactly once after it is back", { timeout: 90_000 }, async () => {
    const customers = await newCustomers("nats");
    const load = startLoad("nats", customers);
    try {
      await waitFor(() => load.acked.size >= 20, { timeoutMs: 20_000, what: "orders acknowledged before the outage" });
      // The read model is live before the outage, so the later catch-up is not a first start.
      await waitFor(async () => (await readModel(customers)).size > 0, { timeoutMs: 15_000, what: "the first orders in the read model" });

      await nats.stop();
      load.state.phase = "nats-down";
      await waitFor(() => load.ackedWithin("nats-down") >= 30, { timeoutMs: 20_000, what: "orders acknowledged while NATS is down" });
      // Orders committed after NATS went away cannot have been published: all are in the backlog.
      const downAcked = load.ackedWithin("nats-down");
      const backlog = await waitFor(async () => (await gauge(topo.serverOf("orders"), "selaras_outbox_backlog")).find((s) => s.labels.module === "orders")?.value, {
        what: "the orders outbox backlog gauge",
      });
      expect(backlog, "orders outbox backlog while NATS is down").toBeGreaterThanOrEqual(downAcked);
      // Still ready, so a load balancer keeps sending orders; the bus is reported away.
      const ready = await fetch(`${topo.serverOf("orders").url}/readyz`);
      const readiness = (await ready.json()) as { checks: { bus: string } };
      expect([ready.status, readiness.checks.bus]).toEqual([200, expect.stringMatching(/^nats unreachable/)]);

      await nats.restart();
      load.state.phase = "nats-up";
      await waitFor(() => load.ackedWithin("nats-up") >= 20, { timeoutMs: 20_000, what: "orders acknowledged after NATS is back" });
    } finally {
      await load.halt();
    }
    expect(load.unexpected, "answers other than 202").toEqual([]);
    expect(load.connectionErrors, "requests that got no answer").toEqual([]);
    await expectExactlyOnce(load, customers);
  });

  it("loses and duplicates nothing when the consumer process is killed with SIGKILL mid-stream and restarted", { timeout: 90_000 }, async () => {
    const customers = await newCustomers("kill");
    const load = startLoad("kill", customers);
    let exit;
    try {
      // The consumer is busy with this load when it dies: it has already projected some of it.
      await waitFor(async () => load.acked.size >= 30 && (await readModel(customers)).size >= 10, { timeoutMs: 20_000, intervalMs: 50, what: "history to be projecting the load" });
      exit = await topo.processes.history!.kill("SIGKILL");
      load.state.phase = "history-dead";
      const projectedAtKill = (await schemaOrders("order_history", customers)).size;
      await waitFor(() => load.ackedWithin("history-dead") >= 20, { timeoutMs: 20_000, what: "orders acknowledged while history is down" });
      expect((await schemaOrders("orders", customers)).size, "orders placed beyond what history had projected").toBeGreaterThan(projectedAtKill);

      await topo.restart("history");
      load.state.phase = "history-back";
      await waitFor(() => load.ackedWithin("history-back") >= 20, { timeoutMs: 20_000, what: "orders acknowledged after history restarted" });
    } finally {
      await load.halt();
    }
    expect(exit?.signal).toBe("SIGKILL");
    expect(load.unexpected, "answers other than 202").toEqual([]);
    expect(load.connectionErrors, "requests that got no answer").toEqual([]);
    await expectExactlyOnce(load, customers);
    const consumed = (await gauge(topo.serverOf("order-history"), "selaras_events_consumed_total")).filter((s) => s.labels.consumer === CONSUMER);
    console.info(`faults e2e (history killed): ${load.acked.size} orders; after restart ${JSON.stringify(Object.fromEntries(consumed.map((s) => [s.labels.result, s.value])))}`);
  });

  it("dead-letters a poison event, lists it with its error, and re-drives it to the consumer; a fixed failure re-drives into the read model", { timeout: 60_000 }, async () => {
    const history = topo.serverOf("order-history");
    const deadLetters = async () => (await gauge(history, "selaras_dead_letters")).find((s) => s.labels.consumer === CONSUMER)?.value ?? 0;
    const dlq = (...args: string[]) => cli(topo.configFile!, "history", ["dead-letters", ...args]);
    expect((await dlq("list")).out, "the dead-letter queue before the test").toBe("no dead letters");

    // A message on the subject order-history (and payments) consume OrderCreated from, with a
    // valid envelope but a payload that is not protobuf: it can never be decoded.
    const poisonId = randomUUID();
    const poisonAggregate = `poison-${run}`;
    const nc = await connect({ servers: nats.url });
    try {
      const h = natsHeaders();
      h.set("Selaras-Event-Id", poisonId);
      h.set("Selaras-Type", "orders.v1.OrderCreated");
      h.set("Selaras-Source", "orders");
      h.set("Selaras-Aggregate-Id", poisonAggregate);
      h.set("Selaras-Occurred-At", String(Date.now()));
      const ack = await jetstream(nc).publish(eventSubject(topo.natsPrefix!, "orders.v1.OrderCreated", 0), new Uint8Array([0xff, 0xff, 0xff, 0xff]), { msgID: `poison-${poisonId}`, headers: h });
      expect(ack.duplicate).toBe(false);
    } finally {
      await nc.close();
    }
    await waitFor(async () => (await deadLetters()) === 1, { timeoutMs: 15_000, intervalMs: 50, what: "the poison event in the dead-letter queue" });

    const listed = await dlq("list");
    expect(listed.code, listed.err).toBe(0);
    const row = new RegExp(`^(\\d+)\\s+${CONSUMER.replace(".", "\\.")}\\s+orders\\.v1\\.OrderCreated\\s+${poisonAggregate}\\s+${MAX_DELIVER}\\s+\\S+\\s+premature EOF`, "m");
    expect(listed.out).toMatch(/^SEQ\s+CONSUMER\s+TYPE\s+AGGREGATE\s+ATTEMPTS\s+DEAD AT\s+ERROR$/m);
    expect(listed.out).toMatch(row);
    const firstSeq = Number(row.exec(listed.out)![1]);
    // payments' saga consumes OrderCreated too: the poison is dead-lettered there as well.
    const paymentsRow = new RegExp(`^\\d+\\s+payments\\.saga\\s+orders\\.v1\\.OrderCreated\\s+${poisonAggregate}\\s+${MAX_DELIVER}\\s+\\S+\\s+premature EOF`, "m");
    await waitFor(async () => paymentsRow.test((await dlq("list")).out), { timeoutMs: 15_000, intervalMs: 100, what: "the poison event dead-lettered by payments' saga too" });

    // Re-driven, it is delivered to order-history again, fails MAX_DELIVER more times and is
    // dead-lettered anew: a new entry, same event, still one in the queue.
    // (analytics, in the same process, consumes OrderCreated too: count order-history's only.)
    const deadLettered = () => history.entries().filter((e) => e.msg === "event dead-lettered" && e.eventId === poisonId && e.consumer === CONSUMER).length;
    expect(deadLettered()).toBe(1);
    const redriven = await dlq("redrive", CONSUMER, String(firstSeq));
    expect(redriven).toMatchObject({ code: 0, out: "re-driven: 1" });
    await waitFor(() => deadLettered() === 2, { timeoutMs: 15_000, intervalMs: 50, what: "the re-driven poison event to be dead-lettered again" });
    const relisted = await dlq("list", CONSUMER);
    expect(relisted.out.split("\n")).toHaveLength(2); // header + one entry
    expect(relisted.out).toMatch(row);
    const secondSeq = Number(row.exec(relisted.out)![1]);
    expect(secondSeq, "a new dead-letter entry").toBeGreaterThan(firstSeq);
    expect(await dlq("redrive", CONSUMER, String(firstSeq)), "the old entry is gone").toMatchObject({ code: 1, out: "re-driven: 0" });

    // A real order whose projection fails (a trigger in order-history's schema stands in for a
    // bug) is dead-lettered; after the fix (the trigger dropped) a re-drive projects it, once.
    const [customer] = await newCustomers("dlq", 1);
    const schema = `${topo.pgPrefix}_order_history`;
    const admin = pgConnect();
    try {
      await admin.unsafe(`CREATE FUNCTION "${schema}".broken_projection() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'projection bug 4711'; END $$;
        CREATE TRIGGER broken_projection BEFORE INSERT ON "${schema}".orders FOR EACH ROW EXECUTE FUNCTION "${schema}".broken_projection()`);
      const productId = [...prices.keys()][0]!;
      const placed = await topo.api.post("/api/v1/orders", { customerId: customer!.id, lines: [{ productId, quantity: 2 }] });
      expect(placed.status, placed.text).toBe(202);
      await waitFor(async () => (await deadLetters()) === 2, { timeoutMs: 15_000, intervalMs: 50, what: "the failing order event in the dead-letter queue" });
      const withBug = await dlq("list", CONSUMER);
      const bugRow = new RegExp(`^(\\d+)\\s+${CONSUMER.replace(".", "\\.")}\\s+orders\\.v1\\.OrderCreated\\s+${placed.body.id}\\s+${MAX_DELIVER}\\s+\\S+\\s+.*projection bug 4711`, "m");
      expect(withBug.out).toMatch(bugRow);
      const bugSeq = Number(bugRow.exec(withBug.out)![1]);
      expect((await topo.api.get(`/api/v1/customers/${customer!.id}/orders`)).body.orders).toEqual([]);
      // The saga does not wait for the read model: the order is confirmed, and order-history
      // records the outcome although it has no order to show it on yet.
      await waitFor(async () => (await topo.api.get(`/api/v1/orders/${placed.body.id}`)).body.status === "CONFIRMED", { timeoutMs: 15_000, what: "the order confirmed by the saga" });
      await waitFor(async () => (await admin.unsafe<Array<{ status: string }>>(`SELECT status FROM "${schema}".order_status WHERE order_id = $1`, [placed.body.id]))[0]?.status === "CONFIRMED", {
        timeoutMs: 15_000,
        what: "the outcome recorded by order-history",
      });
      expect((await topo.api.get(`/api/v1/customers/${customer!.id}/orders`)).body.orders).toEqual([]);

      await admin.unsafe(`DROP TRIGGER broken_projection ON "${schema}".orders; DROP FUNCTION "${schema}".broken_projection()`);
      expect(await dlq("redrive", CONSUMER, String(bugSeq))).toMatchObject({ code: 0, out: "re-driven: 1" });
      // The outcome that came before its OrderCreated is kept.
      const view = await waitFor(
        async () => {
          const o = (await topo.api.get(`/api/v1/customers/${customer!.id}/orders`)).body.orders?.[0];
          return o?.status === "CONFIRMED" && o;
        },
        { timeoutMs: 15_000, what: "the re-driven order in the read model, CONFIRMED" },
      );
      expect(view).toMatchObject({ id: placed.body.id, status: "CONFIRMED", totalCents: 2 * prices.get(productId)!, customerName: customer!.name });
      expect((await topo.api.get(`/api/v1/customers/${customer!.id}/orders`)).body.orders).toHaveLength(1);
      otherOrders.push({ customerId: customer!.id, lines: [{ productId, quantity: 2 }] });
      // Only the poison is left: order-history's entry, payments' saga's and analytics' (which
      // consumes OrderCreated too).
      const left = await dlq("list", CONSUMER);
      expect(left.out.split("\n")).toHaveLength(2);
      expect(left.out).toMatch(row);
      const all = await dlq("list");
      expect(all.out.split("\n")).toHaveLength(4);
      expect(all.out).toMatch(paymentsRow);
      expect(all.out).toMatch(new RegExp(`^\\d+\\s+analytics\\.sales\\s+orders\\.v1\\.OrderCreated\\s+${poisonAggregate}\\s`, "m"));
      await waitFor(async () => (await deadLetters()) === 1, { what: "the dead-letter gauge to count the poison only" });
    } finally {
      await admin.unsafe(`DROP TRIGGER IF EXISTS broken_projection ON "${schema}".orders; DROP FUNCTION IF EXISTS "${schema}".broken_projection()`).catch(() => {});
      await admin.end();
    }
  });

  it("on SIGTERM, the orders process finishes the requests in flight, publishes its outbox and exits 0; every 202 reaches the read model", { timeout: 90_000 }, async () => {
    const customers = await newCustomers("term");
    const load = startLoad("term", customers);
    const orders = topo.serverOf("orders");
    try {
      await waitFor(() => load.acked.size >= 40, { timeoutMs: 20_000, what: "orders acknowledged before SIGTERM" });
    } catch (err) {
      await load.halt();
      throw err;
    }
    // SIGTERM lands on requests in flight: the clients' current ones and a burst. The clients send
    // nothing new after it. core is stopped meanwhile (SIGSTOP), so whatever orders has begun to
    // handle waits in PlaceOrder's call to catalog: it is surely in flight when SIGTERM arrives,
    // and commits after it once core runs again.
    const core = topo.serverOf("catalog");
    load.state.halted = true;
    core.proc.kill("SIGSTOP");
    let exit: Awaited<ReturnType<RunningServer["stop"]>>;
    let inFlightAtTerm: number;
    try {
      load.burst(16);
      // Besides the scrape itself.
      await waitFor(async () => ((await gauge(orders, "selaras_http_requests_in_flight"))[0]?.value ?? 0) > 1, { what: "orders handling a request while core is stopped" });
      load.state.phase = "terminating";
      inFlightAtTerm = load.state.inFlight;
      const stopping = orders.stop(20_000);
      await waitFor(() => orders.entries().some((e) => e.msg === "shutting down"), { what: "orders taking the SIGTERM" });
      core.proc.kill("SIGCONT");
      exit = await stopping;
    } finally {
      core.proc.kill("SIGCONT");
    }
    await load.halt();
    expect(exit, "graceful exit, not forced").toEqual({ code: 0, signal: null });
    expect(inFlightAtTerm, "requests in flight when SIGTERM was sent").toBeGreaterThanOrEqual(16);
    expect(load.unexpected, "answers other than 202 (a request broken by the shutdown)").toEqual([]);
    // Each request in flight at SIGTERM was either answered 202 or failed on the client (refused).
    const answeredAfterTerm = [...load.acked.values()].filter((a) => a.ackedIn === "terminating").length;
    expect(answeredAfterTerm + load.connectionErrors.length).toBe(inFlightAtTerm);
    // Some were committed after SIGTERM, so what follows checks the shutdown published them.
    expect(answeredAfterTerm, "requests answered 202 after SIGTERM").toBeGreaterThan(0);

    // Flushed before exiting: nothing unpublished is left, and with the orders process gone every
    // acknowledged order still reaches the read model.
    const admin = pgConnect();
    try {
      const [row] = await admin.unsafe<Array<{ n: string }>>(`SELECT count(*) AS n FROM "${topo.pgPrefix}_orders".selaras_outbox WHERE published_at IS NULL`);
      expect(Number(row!.n), "unpublished outbox rows after the graceful exit").toBe(0);
    } finally {
      await admin.end();
    }
    const ackedIds = [...load.acked.values()].map((a) => a.id);
    let missing = ackedIds;
    await waitFor(
      async () => {
        const seen = await readModel(customers);
        missing = ackedIds.filter((id) => !seen.has(id));
        return missing.length === 0;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: "every acknowledged order in the read model while orders is down" },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${missing.length} of ${ackedIds.length} missing`);
    });

    const logs = orders.entries();
    const at = (msg: string) => logs.findIndex((e) => e.msg === msg);
    expect(logs[at("shutting down")]).toMatchObject({ signal: "SIGTERM" });
    expect(at("platform stopped"), "'platform stopped' after 'shutting down'").toBeGreaterThan(at("shutting down"));
    expect(logs.slice(at("shutting down")).filter((e) => e.level === "error" || e.level === "warn"), "errors and warnings during shutdown").toEqual([]);

    // Back up: requests the shutdown refused are re-sent with their key; then exactly once.
    await topo.restart("orders");
    await load.retryPending();
    // Graceful means a request the server took is answered: one that failed on the client was
    // never committed (refused or reset before it was read), so its retry is not a replay.
    expect(load.state.replayed, "requests cut off after the server had committed them").toBe(0);
    console.info(
      `faults e2e (SIGTERM): ${inFlightAtTerm} requests in flight at SIGTERM: ${answeredAfterTerm} answered 202, ${load.connectionErrors.length} failed (${[...new Set(load.connectionErrors.map((e) => e.error))].join(" | ")}), of which ${load.state.replayed} had committed (replayed on retry); ${load.acked.size} orders in all`,
    );
    await expectExactlyOnce(load, customers);
  });

  it("after every fault, every saga is done, each product reserved exactly what was ordered, and the invariants hold", async () => {
    const placed = [...loads.flatMap((l) => [...l.acked.values()].map((a) => a.body)), ...otherOrders];
    expect(placed.length, "orders the tests above placed").toBeGreaterThan(0);
    const { confirmed, cancelled } = await expectSagasDoneAndInvariantsHold(sagaClients((m) => topo.serverOf(m).url));
    expect({ confirmed, cancelled }, "sagas by final state").toEqual({ confirmed: placed.length, cancelled: 0 });
    for (const productId of prices.keys()) {
      const ordered = placed.flatMap((b) => b.lines).filter((l) => l.productId === productId).reduce((sum, l) => sum + l.quantity, 0);
      const r = await topo.api.get(`/api/v1/inventory/${productId}`);
      expect(r.body, `stock of ${productId}`).toEqual({ productId, available: STOCK - ordered, reserved: ordered });
    }
  });
});
