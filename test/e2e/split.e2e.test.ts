/**
 * The split topology of `config/split.json`, for real: five `bun main.ts --config FILE --process
 * NAME` processes on the shared NATS and the test Postgres (a random bus and schema prefix, both
 * dropped afterwards), each with its own port and data dir.
 * core hosts catalog and customers, orders hosts orders (it calls core over Connect/HTTP),
 * payments and inventory host the saga's other steps, history hosts the order-history read model
 * and notifications (both fed only by events over NATS).
 *
 * Bun pass only: see the note in harness.ts.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deleteStreams, randomPrefix, SHARED_NATS } from "../support/nats-server.ts";
import { waitFor } from "../support/platform.ts";
import { dropPgPrefix, pgStorageConfig } from "../support/postgres.ts";
import { api, freePort, isBun, parseMetrics, pgTableCounts, randomTraceparent, repoRoot, serverPool, type RunningServer } from "./harness.ts";

type Topology = { bus: { nats: Record<string, unknown> }; storage: Record<string, unknown>; rpc: { timeoutMs: number }; topology: { processes: Record<string, { port: number; url: string; dataDir: string }> } };

// Long enough that a call which fails at once is told apart from one that ran into its deadline.
const RPC_TIMEOUT_MS = 30_000;

const PROCESSES = ["core", "orders", "payments", "inventory", "history"];

describe.skipIf(!isBun)("split topology: five processes on Postgres + NATS (e2e)", () => {
  const pool = serverPool();
  const prefix = randomPrefix();
  const run = Math.random().toString(36).slice(2, 8);
  let file: string;
  const dirs: Record<string, string> = {};
  const srv: Record<string, RunningServer> = {};
  // core logs at debug: its access log lines show which trace each request belonged to.
  const start = async (name: string) => {
    srv[name] = await pool.start({ dataDir: dirs[name], defaultArgs: false, args: ["--config", file, "--process", name, ...(name === "core" ? ["--log-level", "debug"] : [])] });
  };
  let customerId: string;
  let productId: string;
  const firstOrders: string[] = [];

  beforeAll(async () => {
    // The shipped example, with free ports, temp data dirs, and a bus and schema prefix of this run's own.
    const topology = JSON.parse(readFileSync(join(repoRoot, "config/split.json"), "utf8")) as Topology;
    expect(Object.keys(topology.topology.processes)).toEqual(PROCESSES);
    for (const [name, p] of Object.entries(topology.topology.processes)) {
      const port = await freePort();
      dirs[name] = pool.dir();
      Object.assign(p, { port, url: `http://127.0.0.1:${port}`, dataDir: dirs[name] });
    }
    topology.bus.nats = { ...topology.bus.nats, servers: [SHARED_NATS], prefix };
    expect(topology.storage).toMatchObject({ kind: "postgres" });
    topology.storage = pgStorageConfig(prefix);
    topology.rpc.timeoutMs = RPC_TIMEOUT_MS;
    file = join(pool.dir(), "split.json");
    writeFileSync(file, JSON.stringify(topology, null, 2));
    await Promise.all(PROCESSES.map(start));
  });
  afterAll(async () => {
    await pool.dispose();
    await deleteStreams(SHARED_NATS, prefix);
    await dropPgPrefix(prefix);
  });

  it("refuses an inconsistent topology at start, exit 2, naming every problem", () => {
    const bad = join(pool.dir(), "bad.json");
    writeFileSync(bad, JSON.stringify({ topology: { processes: { a: { modules: ["catalog", "orders"] }, b: { modules: ["orders", "shipping"] } } } }));
    const r = spawnSync("bun", ["main.ts", "--config", bad, "--process", "b"], { cwd: repoRoot, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/tmp" }, encoding: "utf8", timeout: 30_000 });
    expect(r.status, r.stderr).toBe(2);
    for (const problem of [
      'unknown module "shipping"',
      "module orders is hosted twice: by process a and by process b",
      "module customers is hosted by no process",
      "module order-history is hosted by no process",
      'bus.kind is "embedded"',
    ]) {
      expect(r.stderr).toContain(problem);
    }
  });

  it("runs the public flow across the processes: the order is confirmed by the saga; its trace continues into core", async () => {
    const core = api(srv.core!.url);
    const orders = api(srv.orders!.url);
    const history = api(srv.history!.url);
    const product = await core.post("/api/v1/products", { sku: `${run}-kopi`, name: "Kopi Toraja", priceCents: 3100 });
    expect(product.status, product.text).toBe(201);
    const customer = await core.post("/api/v1/customers", { email: `budi.${run}@example.com`, name: "Budi Santoso", creditLimitCents: 1_000_000 });
    expect(customer.status, customer.text).toBe(201);
    productId = product.body.id;
    customerId = customer.body.id;
    // Each process serves only its own modules.
    expect((await orders.get(`/api/v1/products/${productId}`)).status).toBe(404);
    const inventory = api(srv.inventory!.url);
    const restocked = await inventory.post(`/api/v1/inventory/${productId}/restock`, { quantity: 10 });
    expect(restocked.status, restocked.text).toBe(200);

    const { header, traceId } = randomTraceparent();
    const placed = await orders.post("/api/v1/orders", { customerId, lines: [{ productId, quantity: 2 }] }, { headers: { traceparent: header } });
    expect(placed.status, placed.text).toBe(202);
    expect(placed.headers.get("traceparent")?.split("-")[1]).toBe(traceId);
    firstOrders.push(placed.body.id);
    // The saga runs over three processes (orders, payments, inventory) and confirms the order.
    const confirmed = await waitFor(
      async () => {
        const o = (await orders.get(`/api/v1/orders/${placed.body.id}`)).body;
        return o.status !== "PENDING" && o;
      },
      { timeoutMs: 15_000, what: "the order's saga to finish" },
    );
    expect(confirmed).toMatchObject({ status: "CONFIRMED", totalCents: 6200, lines: [{ productId, quantity: 2, unitPriceCents: 3100 }] });
    expect((await inventory.get(`/api/v1/inventory/${productId}`)).body).toEqual({ productId, available: 8, reserved: 2 });
    const account = await api(srv.payments!.url).post("/payments.v1.PaymentService/GetAccount", { customerId });
    expect(account.body).toMatchObject({ account: { creditLimitCents: "1000000", availableCents: String(1_000_000 - 6200) } });

    const view = await waitFor(async () => (await history.get(`/api/v1/customers/${customerId}/orders`)).body.orders?.find((o: { id: string; status: string }) => o.id === placed.body.id && o.status === "CONFIRMED"), {
      timeoutMs: 15_000,
      what: "the order CONFIRMED in history's read model",
    });
    expect(view).toMatchObject({ status: "CONFIRMED", totalCents: 6200, customerName: "Budi Santoso", lines: [{ productId, productName: "Kopi Toraja", quantity: 2 }] });
    // Each module keeps its rows in its own schema of the test Postgres, under this run's prefix.
    const counts = await pgTableCounts(prefix);
    expect(Object.keys(counts).sort()).toEqual(["analytics", "catalog", "customers", "inventory", "notifications", "order_history", "orders", "payments"].map((m) => `${prefix}_${m}`));
    expect(counts[`${prefix}_orders`]).toMatchObject({ orders: 1 });
    expect(counts[`${prefix}_order_history`]).toMatchObject({ orders: 1 });
    expect(counts[`${prefix}_payments`]).toMatchObject({ payments: 1 });

    // orders called core over HTTP within the caller's trace: core logged both calls with its id.
    const routes = await waitFor(() => {
      const seen = srv.core!.entries().filter((e) => e.traceId === traceId && e.msg === "request").map((e) => e.route);
      return seen.length >= 2 && seen;
    });
    expect(routes.sort()).toEqual(["/catalog.v1.CatalogService/GetProducts", "/customers.v1.CustomerService/GetCustomer"]);
    const samples = parseMetrics((await orders.get("/metrics")).text);
    const http = samples.filter((s) => s.name === "selaras_rpc_client_duration_seconds_count" && s.labels.transport === "http" && s.labels.code === "ok");
    expect(http.map((s) => s.labels.method).sort()).toEqual(["GetCustomer", "GetProducts"]);
    expect(samples.find((s) => s.name === "selaras_rpc_circuit_state" && s.labels.process === "core")?.value).toBe(0);
  });

  it("fails orders fast with 503 while core is down, opens the circuit, and recovers when core is back", async () => {
    expect(customerId, "the first test placed an order").toBeDefined();
    const orders = api(srv.orders!.url);
    const place = () => orders.post("/api/v1/orders", { customerId, lines: [{ productId, quantity: 1 }] }, { signal: AbortSignal.timeout(RPC_TIMEOUT_MS / 2) });
    await srv.core!.stop();

    const down = await place();
    expect(down.status, down.text).toBe(503);
    expect(down.body).toMatchObject({ code: "unavailable" });
    // Every attempt failed, so the breaker opened: later calls fail without trying core.
    const open = await waitFor(async () => {
      const r = await place();
      expect(r.status, r.text).toBe(503);
      return /circuit open/.test(r.body.message) && r;
    });
    expect(open.body.code).toBe("unavailable");
    const state = parseMetrics((await orders.get("/metrics")).text).find((s) => s.name === "selaras_rpc_circuit_state" && s.labels.process === "core");
    expect(state?.value).toBeGreaterThan(0);

    await start("core"); // same port and data dir, from the topology file
    const back = await waitFor(
      async () => {
        const r = await place();
        return r.status === 202 && r;
      },
      { timeoutMs: 20_000, what: "orders to reach core again" },
    );
    const history = api(srv.history!.url);
    const ids = await waitFor(
      async () => {
        const o = ((await history.get(`/api/v1/customers/${customerId}/orders`)).body.orders ?? []) as Array<{ id: string }>;
        return o.length >= 2 && o.map((x) => x.id);
      },
      { timeoutMs: 15_000, what: "both orders in the read model" },
    );
    // The refused attempts placed nothing: exactly the first order and the one after recovery.
    expect(ids.sort()).toEqual([...firstOrders, back.body.id].sort());
    // The saga needs nothing from core: the order placed after recovery is confirmed too.
    const after = await waitFor(
      async () => {
        const o = (await orders.get(`/api/v1/orders/${back.body.id}`)).body;
        return o.status !== "PENDING" && o;
      },
      { timeoutMs: 15_000, what: "the saga of the order placed after recovery" },
    );
    expect(after.status).toBe("CONFIRMED");
  });
});
