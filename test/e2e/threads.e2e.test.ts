/**
 * One process with modules on a module thread (`threads.workers`; the binary's default on 2+
 * cores, ADR 0017), seen from outside: the main thread forwards the thread's routes in the
 * caller's trace, the read-model admin reaches the read model on the thread, and /metrics shows
 * the whole process once — the thread's series merged in, none counted twice. The saga, contract
 * and bad-input suites run on this topology too (harness.ts `TOPOLOGIES`, "threads").
 *
 * Bun pass only: see the note in harness.ts.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/platform.ts";
import { isBun, parseMetrics, randomTraceparent, startTopology, THREAD_MODULES, type RunningTopology } from "./harness.ts";

const CONSUMERS = ["orders.saga", "payments.saga", "inventory.saga", "order-history.projection", "notifications.outcomes", "analytics.sales"];

describe.skipIf(!isBun)("modules on a module thread (e2e)", () => {
  let topo: RunningTopology;
  let productId = "";
  let customerId = "";
  let orderId = "";

  beforeAll(async () => {
    topo = await startTopology("threads");
    const run = Math.random().toString(36).slice(2, 8);
    productId = (await topo.api.post("/api/v1/products", { sku: `${run}-thr`, name: "Kopi", priceCents: 500 })).body.id;
    expect((await topo.api.post(`/api/v1/inventory/${productId}/restock`, { quantity: 10 })).status).toBe(200);
    customerId = (await topo.api.post("/api/v1/customers", { email: `thr.${run}@example.com`, name: "Tari", creditLimitCents: 10_000 })).body.id;
    const o = await topo.api.post("/api/v1/orders", { customerId, lines: [{ productId, quantity: 2 }] });
    expect(o.status, o.text).toBe(202);
    orderId = o.body.id;
    await waitFor(async () => (await topo.api.get(`/api/v1/orders/${orderId}`)).body.status === "CONFIRMED", { what: "the order CONFIRMED" });
    await waitFor(() => topo.settled(), { what: "settled" });
  });
  afterAll(() => topo?.stop());

  it("serves the thread's routes on the one port, in the caller's trace", async () => {
    const { header, traceId } = randomTraceparent();
    const res = await fetch(`${topo.processes.all!.url}/api/v1/inventory/${productId}`, { headers: { traceparent: header } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ productId, available: 8, reserved: 2 });
    expect(res.headers.get("traceparent")).toContain(traceId);
    // A read model on the thread answers through the main thread too.
    const reads = await fetch(`${topo.processes.all!.url}/api/v1/customers/${customerId}/notifications`, { headers: { traceparent: header } });
    expect(((await reads.json()) as { notifications: unknown[] }).notifications).toMatchObject([{ orderId, kind: "order-confirmed" }]);
    // A path nobody serves is still the main thread's 404, in the one error shape.
    const missing = await fetch(`${topo.processes.all!.url}/api/v1/inventory`);
    expect(missing.status).toBe(404);
  });

  it("lists and replays the read model on the thread through the main thread's admin", async () => {
    const list = await topo.api.get("/admin/v1/read-models");
    expect(list.status, list.text).toBe(200);
    expect(list.body.readModels.map((r: { consumer: string }) => r.consumer)).toContain("order-history.projection");
    const res = await fetch(`${topo.processes.all!.url}/admin/v1/read-models/order-history.projection/replay`, { method: "POST" });
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const events = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { event: string });
    expect(events[0]!.event).toBe("started");
    expect(events.at(-1)!.event).toBe("done");
    expect((await topo.api.get(`/api/v1/customers/${customerId}/orders`)).body.orders).toMatchObject([{ id: orderId, status: "CONFIRMED" }]);
  });

  it("reports the whole process once on /metrics: the thread's series merged, nothing twice", async () => {
    const text = await (await fetch(`${topo.processes.all!.url}/metrics`)).text();
    const samples = parseMetrics(text);
    const count = (name: string, labels: Record<string, string> = {}) => samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).length;
    // One process: its memory is counted once, not once per thread (same-named series are
    // summed, so a second registry's process metrics would double it), and its start time is there.
    const rss = samples.find((s) => s.name === "selaras_process_process_resident_memory_bytes")!.value;
    const kernelRss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${topo.processes.all!.proc.pid}/status`, "utf8"))![1]) * 1024;
    expect(rss / kernelRss).toBeGreaterThan(0.7);
    expect(rss / kernelRss).toBeLessThan(1.3);
    expect(count("selaras_process_process_start_time_seconds")).toBe(1);
    for (const consumer of CONSUMERS) {
      expect(count("selaras_consumer_lag_events", { consumer }), consumer).toBe(1);
      expect(samples.find((s) => s.name === "selaras_events_consumed_total" && s.labels.consumer === consumer && s.labels.result === "processed")?.value, consumer).toBeGreaterThan(0);
    }
    for (const module of THREAD_MODULES) expect(count("selaras_outbox_backlog", { module }), module).toBe(1);
    // Each TYPE line once: the text is one valid exposition, not two registries pasted together.
    const types = text.split("\n").filter((l) => l.startsWith("# TYPE "));
    expect(new Set(types).size).toBe(types.length);
    // The forwarded request is timed once, by the main thread, under its route.
    expect(samples.some((s) => s.name === "selaras_http_request_duration_seconds_count" && s.labels.route === "/api/v1/inventory/:productId")).toBe(true);
  });
});
