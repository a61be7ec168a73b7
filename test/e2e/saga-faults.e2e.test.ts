/**
 * Faults of the order saga (orders → payments → inventory → confirmed, compensated on failure or
 * timeout) in the split topology (config/split.json: core, orders, payments, inventory, history)
 * on the test Postgres and the shared NATS:
 *  1. a module down: with payments stopped, orders wait in AWAITING_PAYMENT and all confirm once it
 *     is back; with inventory stopped and a short stock timeout, orders time out, their payment is
 *     refunded, and once inventory is back the late reservations are released: CANCELLED
 *     `stock-timeout`, stock as before, invariants hold;
 *  2. a compensation that keeps failing (a trigger in payments' schema makes every refund fail)
 *     ends STUCK, visible in the API and the metrics; after the fix, resuming the saga cancels the
 *     order with the credit given back once — even when the dead-lettered refund requests are
 *     re-driven afterwards;
 *  3. kill -9 of orders, payments, inventory and history, one at a time at random moments under
 *     load: every acknowledged order ends CONFIRMED or CANCELLED, money and stock add up per
 *     customer and product, the read models show each outcome once, and the invariant checker
 *     (in-process and `bun main.ts check-invariants`) passes.
 *
 * The tests share one topology; each sets the saga timings it needs (`useSaga` rewrites
 * `modules.orders.saga` in the topology file and restarts the orders process) and uses its own
 * customers and products, so money and stock are checked exactly. The bus is patched as in
 * faults.e2e.test.ts for the time budget: an event in flight in a killed consumer is redelivered
 * after 2 s, and a failing one is dead-lettered after 4 deliveries within ~0.5 s. The crash test's
 * clients are paced by the sagas in flight (`selaras_sagas`), so a backlog that outgrows the
 * 4 s timeouts on this 2-core machine does not drown what the crashes do.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { OrderService } from "../../gen/orders/v1/orders_pb.ts";
import { PaymentService, PaymentStatus } from "../../gen/payments/v1/payments_pb.ts";
import { checkInvariants, formatReport } from "../../ops/invariants.ts";
import { notes, sagaClients, type OrderJson } from "./saga-checks.ts";
import { waitFor } from "../support/platform.ts";
import { pgConnect } from "../support/postgres.ts";
import { isBun, parseMetrics, repoRoot, startTopology, type RunningServer, type RunningTopology } from "./harness.ts";

const MAX_DELIVER = 4;
const REQUEST_TIMEOUT_MS = 15_000;
/** Sagas in flight above which the crash test's clients wait before placing another order. */
const MAX_IN_FLIGHT = 30;

interface OrderBody {
  customerId: string;
  lines: Array<{ productId: string; quantity: number }>;
}
type SagaTimings = { paymentTimeoutMs: number; stockTimeoutMs: number; compensationRetryMs?: number; compensationMaxAttempts?: number; sweepIntervalMs: number };

const randomInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

/** `bun main.ts …args`, to completion. */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SELARAS_")) env[k] = v;
  const child = spawn("bun", ["main.ts", ...args], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, out: out.trim(), err: err.trim() })));
}

describe.skipIf(!isBun)("order saga under faults in the split topology on Postgres + NATS (e2e)", () => {
  let topo: RunningTopology;
  const run = Math.random().toString(36).slice(2, 8);
  // The orders process starts with generous timeouts (test 1 needs them first).
  const GENEROUS: SagaTimings = { paymentTimeoutMs: 60_000, stockTimeoutMs: 60_000, sweepIntervalMs: 100 };

  beforeAll(async () => {
    topo = await startTopology("split", {
      patch: (c) => {
        c.bus.maxDeliver = MAX_DELIVER;
        c.bus.backoffMs = [100, 200];
        c.bus.nats.ackWaitSeconds = 2;
        c.bus.nats.leaseSeconds = 2;
        // 2 + 2 connections per module instead of 4 + 2 (28 for the topology instead of 42): the
        // test Postgres allows 100, shared with whatever else runs at the same time.
        c.storage.postgres.poolSize = 2;
        c.modules = { orders: { saga: GENEROUS } };
      },
    });
  });
  afterEach((ctx) => {
    // A failed test shows what the processes complained about.
    if (ctx.task.result?.state !== "fail" || !topo) return;
    const complaints = topo.entries().filter((e) => e.level === "error" || e.level === "warn");
    console.error(`warnings and errors of the topology (last 20 of ${complaints.length}):\n${complaints.slice(-20).map((e) => JSON.stringify(e).slice(0, 1000)).join("\n")}`);
  });
  afterAll(async () => {
    await topo?.stop();
  });

  // Clients over Connect to whichever process hosts the module now (a restart keeps the port).
  const transport = (module: string) => createConnectTransport({ baseUrl: topo.serverOf(module).url });
  const payments = () => createClient(PaymentService, transport("payments"));
  const ordersRpc = () => createClient(OrderService, transport("orders"));
  const invariantClients = () => sagaClients((m) => topo.serverOf(m).url);

  /** Rewrites `modules.orders.saga` in the topology file and restarts orders on it (a no-op when unchanged). */
  async function useSaga(saga: SagaTimings) {
    const file = topo.configFile!;
    const config = JSON.parse(readFileSync(file, "utf8"));
    if (JSON.stringify(config.modules?.orders?.saga) === JSON.stringify(saga)) return;
    config.modules = { ...config.modules, orders: { ...config.modules?.orders, saga } };
    writeFileSync(file, JSON.stringify(config, null, 2));
    expect(await topo.processes.orders!.stop(), "orders stops gracefully").toEqual({ code: 0, signal: null });
    await topo.restart("orders");
  }

  async function newProduct(tag: string, priceCents: number, stock: number): Promise<string> {
    const r = await topo.api.post("/api/v1/products", { sku: `${run}-${tag}`, name: `Produk ${tag}`, priceCents });
    expect(r.status, r.text).toBe(201);
    if (stock > 0) {
      const s = await topo.api.post(`/api/v1/inventory/${r.body.id}/restock`, { quantity: stock });
      expect(s.status, s.text).toBe(200);
    }
    return r.body.id;
  }

  /** A registered customer whose payments account is open (so charges are not parked). */
  async function newCustomer(tag: string, creditLimitCents: number): Promise<string> {
    const r = await topo.api.post("/api/v1/customers", { email: `${tag}.${run}@example.com`, name: `Pelanggan ${tag}`, creditLimitCents });
    expect(r.status, r.text).toBe(201);
    await waitFor(() => available(r.body.id).catch(() => undefined), { timeoutMs: 15_000, what: `the payments account of ${tag}` });
    return r.body.id;
  }

  const available = async (customerId: string) => Number((await payments().getAccount({ customerId })).account!.availableCents);
  const paymentOf = async (orderId: string) => (await payments().getPayment({ orderId })).payment!;
  const stockOf = async (productId: string) => {
    const r = await topo.api.get(`/api/v1/inventory/${productId}`);
    expect(r.status, r.text).toBe(200);
    return r.body as { available: number; reserved: number };
  };
  const getOrder = async (id: string): Promise<OrderJson> => {
    const r = await topo.api.get(`/api/v1/orders/${id}`);
    if (r.status !== 200) throw new Error(`GET order ${id}: ${r.status} ${r.text}`);
    return r.body;
  };
  const getOrders = (ids: readonly string[]) => Promise.all(ids.map(getOrder));
  /**
   * Resolves (for `waitFor`) once every order satisfies `ok`; until then throws with how many do
   * not, by saga state and last note (which `waitFor` reports when it times out).
   */
  const all = (ids: readonly string[], ok: (o: OrderJson) => boolean) => async () => {
    const os = await getOrders(ids);
    const not = os.filter((o) => !ok(o));
    if (not.length === 0) return os;
    const by = new Map<string, number>();
    for (const o of not) by.set(`${o.saga.state} after ${notes(o).at(-1)}`, (by.get(`${o.saga.state} after ${notes(o).at(-1)}`) ?? 0) + 1);
    throw new Error(`${not.length} of ${os.length} not yet: ${JSON.stringify(Object.fromEntries(by))}`);
  };
  const place = async (body: OrderBody): Promise<string> => {
    const r = await topo.api.post("/api/v1/orders", body);
    expect([r.status, r.body?.status], r.text).toEqual([202, "PENDING"]);
    return r.body.id;
  };
  const gauge = async (srv: RunningServer, name: string) => parseMetrics(await (await fetch(`${srv.url}/metrics`)).text()).filter((s) => s.name === name);
  const sagasIn = async (state: string) => (await gauge(topo.serverOf("orders"), "selaras_sagas")).find((s) => s.labels.state === state)?.value ?? 0;
  const deadLetters = async (consumer: string) => (await gauge(topo.serverOf("payments"), "selaras_dead_letters")).find((s) => s.labels.consumer === consumer)?.value ?? 0;
  const consumed = async (module: string, consumer: string) =>
    (await gauge(topo.serverOf(module), "selaras_events_consumed_total")).find((s) => s.labels.consumer === consumer && s.labels.result === "processed")?.value ?? 0;
  const expectInvariants = async () => {
    const report = await checkInvariants(invariantClients(), { settleMs: 15_000 });
    expect(report.ok, formatReport(report).join("\n")).toBe(true);
    return report;
  };

  it("a module down: orders wait for payments and all confirm when it is back; with inventory down they time out, are refunded, and the late reservations are released", { timeout: 60_000 }, async () => {
    // --- payments down, generous timeouts: the sagas wait.
    await useSaga(GENEROUS);
    const productA = await newProduct("down-a", 1250, 100);
    const limit = 10_000_000;
    const buyers = [await newCustomer("down-a0", limit), await newCustomer("down-a1", limit)];
    expect(await topo.processes.payments!.stop(), "payments stops gracefully").toEqual({ code: 0, signal: null });

    const bodies: OrderBody[] = Array.from({ length: 8 }, (_, i) => ({ customerId: buyers[i % 2]!, lines: [{ productId: productA, quantity: randomInt(1, 3) }] }));
    const ids = await Promise.all(bodies.map(place));
    // OrderCreated reached the bus: the history process projects every order, so only payments'
    // absence holds the sagas.
    await waitFor(
      async () => {
        const listed = await Promise.all(buyers.map(async (c) => (await topo.api.get(`/api/v1/customers/${c}/orders`)).body.orders as Array<{ id: string }>));
        return ids.every((id) => listed.flat().some((o) => o.id === id));
      },
      { timeoutMs: 15_000, what: "every order in the read model while payments is down" },
    );
    for (const o of await getOrders(ids)) {
      expect({ status: o.status, state: o.saga.state, notes: notes(o), attempts: o.saga.compensationAttempts }, o.id).toEqual({ status: "PENDING", state: "AWAITING_PAYMENT", notes: ["order-placed"], attempts: 0 });
      expect(Date.parse(o.saga.deadline!) - Date.parse(o.createdAt), `payment deadline of ${o.id}`).toBe(GENEROUS.paymentTimeoutMs);
    }
    expect(await sagasIn("AWAITING_PAYMENT"), "selaras_sagas{state=AWAITING_PAYMENT}").toBeGreaterThanOrEqual(ids.length);

    await topo.restart("payments");
    const confirmed = await waitFor(all(ids, (o) => o.status === "CONFIRMED"), { timeoutMs: 20_000, intervalMs: 100, what: "every order CONFIRMED after payments is back" });
    for (const o of confirmed) {
      expect({ state: o.saga.state, reason: o.reason, notes: notes(o) }, o.id).toEqual({ state: "CONFIRMED", reason: undefined, notes: ["order-placed", "payment-processed", "stock-reserved"] });
      const p = await paymentOf(o.id);
      expect([p.status, Number(p.amountCents)], `payment of ${o.id}`).toEqual([PaymentStatus.CAPTURED, o.totalCents]);
    }
    for (const c of buyers) {
      const spent = confirmed.filter((o) => o.customerId === c).reduce((n, o) => n + o.totalCents, 0);
      expect(await available(c), `credit of ${c}`).toBe(limit - spent);
    }
    const reservedA = bodies.reduce((n, b) => n + b.lines[0]!.quantity, 0);
    expect(await stockOf(productA)).toMatchObject({ available: 100 - reservedA, reserved: reservedA });

    // --- inventory down, short stock timeout: paid orders time out and are compensated.
    await useSaga({ paymentTimeoutMs: 30_000, stockTimeoutMs: 1_500, sweepIntervalMs: 100 });
    const productB = await newProduct("down-b", 399, 100);
    const buyer = await newCustomer("down-b", limit);
    expect(await topo.processes.inventory!.stop(), "inventory stops gracefully").toEqual({ code: 0, signal: null });
    const late = await Promise.all(Array.from({ length: 6 }, () => place({ customerId: buyer, lines: [{ productId: productB, quantity: randomInt(1, 4) }] })));
    // The refund is acknowledged; the release waits for inventory.
    const compensating = await waitFor(
      all(late, (o) => o.saga.state === "COMPENSATING" && notes(o).includes("refunded")),
      { timeoutMs: 20_000, intervalMs: 100, what: "every order timed out and refunded while inventory is down" },
    );
    for (const o of compensating) {
      expect({ status: o.status, sagaReason: o.saga.reason, notes: notes(o).slice(0, 3) }, o.id).toEqual({ status: "PENDING", sagaReason: "stock-timeout", notes: ["order-placed", "payment-processed", "stock-timeout"] });
      expect((await paymentOf(o.id)).status, `payment of ${o.id}`).toBe(PaymentStatus.REFUNDED);
    }
    expect(await available(buyer), "credit restored while inventory is down").toBe(limit);

    await topo.restart("inventory");
    // The reservation requests sent before the timeout arrive first: whatever they reserved is
    // released (or, released first, they are refused).
    const cancelled = await waitFor(all(late, (o) => o.status === "CANCELLED"), { timeoutMs: 20_000, intervalMs: 100, what: "every order CANCELLED after inventory is back" });
    for (const o of cancelled) {
      expect({ reason: o.reason, state: o.saga.state, last: notes(o).at(-1) }, o.id).toEqual({ reason: "stock-timeout", state: "CANCELLED", last: "released" });
      expect(notes(o), o.id).toContain("refunded");
    }
    await waitFor(() => topo.settled(), { timeoutMs: 15_000, intervalMs: 100, what: "outboxes and consumers to settle" });
    expect(await stockOf(productB), "stock of the timed-out orders").toMatchObject({ available: 100, reserved: 0 });
    expect(await available(buyer), "credit after the compensation").toBe(limit);
    await expectInvariants();
  });

  it("a refund that keeps failing leaves the saga STUCK (API, metric, invariant checker); resumed after the fix, it cancels with the credit given back once", { timeout: 45_000 }, async () => {
    await useSaga({ paymentTimeoutMs: 30_000, stockTimeoutMs: 30_000, compensationRetryMs: 300, compensationMaxAttempts: 2, sweepIntervalMs: 100 });
    // Never restocked: inventory refuses it, so the paid order must be refunded.
    const product = await newProduct("stuck", 2500, 0);
    const limit = 100_000;
    const customer = await newCustomer("stuck", limit);
    const schema = `${topo.pgPrefix}_payments`;
    const admin = pgConnect();
    try {
      await admin.unsafe(`CREATE FUNCTION "${schema}".refund_blocked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refund blocked 4711'; END $$;
        CREATE TRIGGER refund_blocked BEFORE UPDATE ON "${schema}".payments FOR EACH ROW WHEN (NEW.status = 'REFUNDED') EXECUTE FUNCTION "${schema}".refund_blocked()`);
      const dlqBefore = await deadLetters("payments.saga");
      const id = await place({ customerId: customer, lines: [{ productId: product, quantity: 2 }] });

      const stuck = await waitFor(
        async () => {
          const o = await getOrder(id);
          return o.saga.state === "STUCK" && o;
        },
        { timeoutMs: 15_000, intervalMs: 100, what: "the saga to be STUCK" },
      );
      expect({ status: stuck.status, sagaReason: stuck.saga.reason, attempts: stuck.saga.compensationAttempts, deadline: stuck.saga.deadline, notes: notes(stuck), last: stuck.saga.history.at(-1)!.state }).toEqual({
        status: "PENDING",
        sagaReason: "out-of-stock",
        attempts: 2,
        deadline: undefined,
        notes: ["order-placed", "payment-processed", "stock-failed", "compensation-retried", "compensation-failed"],
        last: "STUCK",
      });
      expect(await sagasIn("STUCK"), 'selaras_sagas{state="STUCK"}').toBeGreaterThanOrEqual(1);
      expect((await paymentOf(id)).status, "the payment, never refunded").toBe(PaymentStatus.CAPTURED);
      expect(await available(customer), "credit while STUCK").toBe(limit - stuck.totalCents);
      const report = await checkInvariants(invariantClients());
      expect(report.checks.find((c) => c.name === "every saga is done or within its deadline"), formatReport(report).join("\n")).toMatchObject({ ok: false, detail: expect.stringMatching(/stuck [1-9]/) });

      // Both refund requests (attempts 1 and 2) failed on the trigger and were dead-lettered: none
      // is still being retried, so none can complete the saga behind the operator's back.
      await waitFor(async () => (await deadLetters("payments.saga")) === dlqBefore + 2, { timeoutMs: 10_000, intervalMs: 50, what: "both refund requests dead-lettered" });
      const dead = topo.processes.payments!.entries().filter((e) => e.msg === "event dead-lettered" && e.consumer === "payments.saga" && JSON.stringify(e.err).includes("refund blocked 4711"));
      expect(dead.length, "dead-lettered refund requests failing on the trigger").toBe(2);
      expect((await getOrder(id)).saga.state).toBe("STUCK");

      await admin.unsafe(`DROP TRIGGER refund_blocked ON "${schema}".payments; DROP FUNCTION "${schema}".refund_blocked()`);
      const resumed = await topo.api.post(`/api/v1/orders/${id}/saga/resume`);
      expect(resumed.status, resumed.text).toBe(200);
      expect(resumed.body.saga.history.map((h: { note: string }) => h.note)).toContain("resumed");
      const cancelled = await waitFor(
        async () => {
          const o = await getOrder(id);
          return o.status === "CANCELLED" && o;
        },
        { timeoutMs: 15_000, intervalMs: 100, what: "the resumed saga to cancel" },
      );
      expect({ reason: cancelled.reason, state: cancelled.saga.state, notes: notes(cancelled).slice(-2) }).toEqual({ reason: "out-of-stock", state: "CANCELLED", notes: ["resumed", "refunded"] });
      expect((await paymentOf(id)).status).toBe(PaymentStatus.REFUNDED);
      expect(await available(customer), "credit restored").toBe(limit);
      expect(await sagasIn("STUCK"), 'selaras_sagas{state="STUCK"} after the resume').toBe(0);
      // Only a STUCK saga resumes (RPC as well as REST).
      const again = await ordersRpc()
        .resumeSaga({ orderId: id })
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect([again?.code, again?.rawMessage]).toEqual([Code.FailedPrecondition, expect.stringContaining("not STUCK")]);

      // The dead-lettered requests need no re-drive; re-driven anyway they change nothing: a refund
      // is given once, the answers reach a saga that is done.
      await waitFor(() => topo.settled(), { timeoutMs: 15_000, intervalMs: 100, what: "outboxes and consumers to settle" });
      const paymentsDone = await consumed("payments", "payments.saga");
      const ordersDone = await consumed("orders", "orders.saga");
      const redrive = await cli(["--config", topo.configFile!, "--process", "payments", "dead-letters", "redrive", "payments.saga"]);
      expect(redrive, redrive.err).toMatchObject({ code: 0, out: "re-driven: 2" });
      await waitFor(async () => (await consumed("payments", "payments.saga")) >= paymentsDone + 2 && (await consumed("orders", "orders.saga")) >= ordersDone + 2, {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: "the re-driven refund requests and their answers to be consumed",
      });
      expect(await deadLetters("payments.saga")).toBe(dlqBefore);
      expect(await available(customer), "credit after the re-drive: given back once").toBe(limit);
      expect(notes(await getOrder(id)), "the saga after the re-drive").toEqual(notes(cancelled));
      await expectInvariants();
    } finally {
      await admin.unsafe(`DROP TRIGGER IF EXISTS refund_blocked ON "${schema}".payments; DROP FUNCTION IF EXISTS "${schema}".refund_blocked()`).catch(() => {});
      await admin.end();
    }
  });

  it("kill -9 of orders, payments, inventory and history at random moments under load: every acknowledged order ends CONFIRMED or CANCELLED and the invariants hold", { timeout: 90_000 }, async () => {
    // Timeouts short enough that an outage makes sagas time out and compensate. Compensation
    // retries as by default: the requests wait on the bus for a restarted module anyway, and
    // each retry is one more request and answer for a consumer that may be catching up.
    await useSaga({ paymentTimeoutMs: 4_000, stockTimeoutMs: 4_000, sweepIntervalMs: 100 });
    const STOCK = 100_000;
    const prices = new Map<string, number>();
    for (const [i, price] of [1250, 399, 10_000, 2500, 150, 4200].entries()) prices.set(await newProduct(`crash-${i}`, price, STOCK), price);
    const limit = 1_000_000_000_000;
    const customers: string[] = [];
    for (let i = 0; i < 6; i++) customers.push(await newCustomer(`crash-${i}`, limit));
    const productIds = [...prices.keys()];

    // Clients that retry a request without an answer (or with a 5xx) with the same key and body
    // until it is acknowledged, as a real client would.
    const acked = new Map<string, { id: string; body: OrderBody }>();
    // Acknowledged order ids with the kill count when they were sent.
    const sentAfter: Array<{ id: string; kills: number }> = [];
    const unexpected: string[] = [];
    const state = { halted: false, retries: 0, replayed: 0, kills: 0 };
    const send = async (key: string) => {
      // One to three of six products: reservations of different orders contend on some streams, not all.
      const picked = [...productIds].sort(() => Math.random() - 0.5).slice(0, randomInt(1, 3));
      const body: OrderBody = { customerId: customers[randomInt(0, customers.length - 1)]!, lines: picked.map((productId) => ({ productId, quantity: randomInt(1, 5) })) };
      const kills = state.kills;
      let tries = 0;
      const r = await waitFor(
        async () => {
          if (tries++ > 0) state.retries++;
          try {
            const res = await topo.api.post("/api/v1/orders", body, { headers: { "Idempotency-Key": key }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
            if (res.status >= 500) return undefined;
            return res;
          } catch {
            return undefined;
          }
        },
        { timeoutMs: 40_000, intervalMs: 50, what: `an answer to ${key}` },
      );
      if (r.status !== 202 || r.body?.status !== "PENDING") unexpected.push(`${key}: ${r.status} ${r.text.slice(0, 200)}`);
      else {
        acked.set(key, { id: r.body.id, body });
        sentAfter.push({ id: r.body.id, kills });
      }
      if (r.headers.get("idempotent-replayed") === "true") state.replayed++;
    };
    /** Sagas not done, from the orders process's gauge (throws while it is down: `waitFor` polls on). */
    const inFlight = async () => {
      const samples = await gauge(topo.serverOf("orders"), "selaras_sagas");
      if (samples.length === 0) throw new Error("no selaras_sagas gauge");
      const byState = Object.fromEntries(samples.map((x) => [x.labels.state, x.value]));
      return { n: samples.filter((x) => x.labels.state !== "STUCK").reduce((sum, x) => sum + x.value, 0), byState };
    };
    // Paced by the sagas in flight: the test is about crashes, not about a backlog that outgrows
    // the saga's timeouts.
    const clients = Array.from({ length: 3 }, async (_, c) => {
      for (let n = 0; !state.halted; n++) {
        await waitFor(async () => state.halted || (await inFlight()).n < MAX_IN_FLIGHT, { timeoutMs: 40_000, intervalMs: 50, what: "sagas in flight to drop" });
        if (!state.halted) await send(`${run}-crash-c${c}-${n}`);
      }
    });

    const victims = ["orders", "payments", "inventory", "history"].sort(() => Math.random() - 0.5);
    const rounds: string[] = [];
    try {
      for (const victim of victims) {
        // Each kill finds the clients free to place orders (the last outage's sagas mostly done).
        await waitFor(
          async () => {
            const { n, byState } = await inFlight();
            if (n < MAX_IN_FLIGHT / 2) return true;
            const lag = (await topo.metrics()).samples.filter((x) => x.name === "selaras_consumer_lag_events" && x.value > 0).map((x) => `${x.labels.consumer} ${x.value}`);
            throw new Error(`sagas ${JSON.stringify(byState)}; consumer lag ${lag.join(", ")}`);
          },
          { timeoutMs: 30_000, intervalMs: 100, what: "the sagas in flight to drop before the next kill" },
        );
        const before = acked.size;
        const at = before + randomInt(5, 25);
        await waitFor(() => acked.size >= at, { timeoutMs: 20_000, what: `orders acknowledged before killing ${victim}` });
        const exit = await topo.processes[victim]!.kill("SIGKILL");
        state.kills++;
        expect(exit.signal, victim).toBe("SIGKILL");
        // Orders cannot take orders while it is down: it restarts at once. The others stay down
        // while orders keep coming; payments and inventory until a saga placed after the kill
        // has timed out and waits for them to acknowledge its compensation.
        const down = acked.size;
        if (victim !== "orders") {
          // (Unless the clients are held back: the sagas in flight wait for the victim.)
          const more = down + randomInt(3, 12);
          await waitFor(async () => acked.size >= more || (await inFlight()).n >= MAX_IN_FLIGHT, { timeoutMs: 20_000, what: `orders acknowledged while ${victim} is down` });
        }
        if (victim === "payments" || victim === "inventory") {
          const { id: first } = await waitFor(() => sentAfter.find((a) => a.kills === state.kills), { timeoutMs: 20_000, what: `an order sent after ${victim} was killed` });
          await waitFor(async () => (await getOrder(first)).saga.state === "COMPENSATING", { timeoutMs: 20_000, intervalMs: 100, what: `order ${first} to time out while ${victim} is down` });
        }
        await topo.restart(victim);
        rounds.push(`${new Date().toISOString().slice(11, 23)} ${victim} killed after ${at - before} orders, ${acked.size - down} acknowledged until it was back`);
      }
      const end = acked.size + 10;
      await waitFor(() => acked.size >= end, { timeoutMs: 20_000, what: "orders acknowledged after the last restart" });
    } finally {
      state.halted = true;
      await Promise.all(clients);
    }
    expect(unexpected, "answers other than 202 PENDING").toEqual([]);
    const byId = new Map([...acked.values()].map((a) => [a.id, a.body]));
    expect(byId.size, "one order per idempotency key").toBe(acked.size);
    const ids = [...byId.keys()];

    const final = await waitFor(all(ids, (o) => o.status === "CONFIRMED" || o.status === "CANCELLED"), { timeoutMs: 40_000, intervalMs: 250, what: `all ${ids.length} acknowledged orders to be CONFIRMED or CANCELLED` });
    await waitFor(() => topo.settled(), { timeoutMs: 20_000, intervalMs: 100, what: "outboxes and consumers to settle" });

    // Every order ended one way, its saga agrees, and payments agrees with it.
    const spent = new Map<string, number>(customers.map((c) => [c, 0]));
    const reserved = new Map<string, number>(productIds.map((p) => [p, 0]));
    const reasons = new Map<string, number>();
    for (const o of final) {
      const body = byId.get(o.id)!;
      expect(o.totalCents, `total of ${o.id}`).toBe(body.lines.reduce((n, l) => n + prices.get(l.productId)! * l.quantity, 0));
      expect(o.saga.state, `saga of ${o.id}`).toBe(o.status);
      const p = await paymentOf(o.id);
      if (o.status === "CONFIRMED") {
        expect([p.status, Number(p.amountCents)], `payment of confirmed ${o.id}`).toEqual([PaymentStatus.CAPTURED, o.totalCents]);
        spent.set(o.customerId, spent.get(o.customerId)! + o.totalCents);
        for (const l of body.lines) reserved.set(l.productId, reserved.get(l.productId)! + l.quantity);
      } else {
        expect(["payment-timeout", "stock-timeout"], `reason of cancelled ${o.id}`).toContain(o.reason);
        expect([PaymentStatus.REFUNDED, PaymentStatus.VOIDED], `payment of cancelled ${o.id}`).toContain(p.status);
        reasons.set(o.reason!, (reasons.get(o.reason!) ?? 0) + 1);
      }
    }
    // Not vacuous: orders went through, and the outages of payments and inventory cancelled some.
    expect(final.filter((o) => o.status === "CONFIRMED").length, "confirmed orders").toBeGreaterThan(0);
    expect(reasons.get("payment-timeout") ?? 0, "orders cancelled by the payments outage").toBeGreaterThan(0);
    expect(reasons.get("stock-timeout") ?? 0, "orders cancelled by the inventory outage").toBeGreaterThan(0);
    for (const [c, n] of spent) expect(await available(c), `credit of ${c}`).toBe(limit - n);
    for (const [p, n] of reserved) expect(await stockOf(p), `stock of ${p}`).toMatchObject({ available: STOCK - n, reserved: n });

    // No order beyond the acknowledged ones (a retried request made no second order).
    const admin = pgConnect();
    try {
      const rows = await admin.unsafe<Array<{ id: string }>>(`SELECT id FROM "${topo.pgPrefix}_orders".orders WHERE customer_id = ANY($1)`, [customers]);
      expect(rows.map((r) => r.id).sort(), "orders in the orders schema").toEqual([...ids].sort());
    } finally {
      await admin.end();
    }

    // The read models show each outcome exactly once.
    const statusOf = new Map(final.map((o) => [o.id, o.status]));
    for (const c of customers) {
      const history = (await topo.api.get(`/api/v1/customers/${c}/orders`)).body.orders as Array<{ id: string; status: string }>;
      const mine = final.filter((o) => o.customerId === c);
      expect(history.map((h) => `${h.id} ${h.status}`).sort(), `order history of ${c}`).toEqual(mine.map((o) => `${o.id} ${o.status}`).sort());
      const sent = (await topo.api.get(`/api/v1/customers/${c}/notifications`)).body.notifications as Array<{ orderId: string; kind: string }>;
      expect(sent.map((n) => `${n.orderId} ${n.kind}`).sort(), `notifications of ${c}`).toEqual(mine.map((o) => `${o.id} order-${statusOf.get(o.id)!.toLowerCase()}`).sort());
    }

    const report = await expectInvariants();
    const checked = await cli(["check-invariants", "--config", topo.configFile!]);
    expect(checked.code, `${checked.out}\n${checked.err}`).toBe(0);
    const lines = checked.out.split("\n");
    expect(lines.at(-1)).toBe("all invariants hold");
    expect(lines.slice(0, -1).map((l) => l.replace(/:.*/, ""))).toEqual(report.checks.map((c) => `ok    ${c.name}`));
    expect(checked.out).not.toMatch(/FAIL/);
    console.info(
      `saga-faults e2e (crash): ${ids.length} orders, ${final.filter((o) => o.status === "CONFIRMED").length} confirmed, cancelled ${JSON.stringify(Object.fromEntries(reasons))}; ${state.retries} retries (${state.replayed} replayed); ${rounds.join("; ")}`,
    );
  });
});
