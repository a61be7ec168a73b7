import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from "prom-client";

const latencyBuckets = [0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The platform's Prometheus metrics, in a registry of its own (no global state: two platforms in
 * one process keep separate figures).
 */
export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration = new Histogram({ name: "selaras_http_request_duration_seconds", help: "HTTP request latency by route and status", labelNames: ["method", "route", "status"], buckets: latencyBuckets, registers: [this.registry] });
  readonly rpcDuration = new Histogram({ name: "selaras_rpc_client_duration_seconds", help: "Module-to-module RPC latency as the caller sees it, by transport", labelNames: ["service", "method", "code", "transport"], buckets: latencyBuckets, registers: [this.registry] });
  readonly relayLag = new Histogram({ name: "selaras_relay_lag_seconds", help: "Time from outbox commit to publish on the bus", labelNames: ["module"], buckets: latencyBuckets, registers: [this.registry] });
  readonly eventsPublished = new Counter({ name: "selaras_events_published_total", help: "Events the relay published", labelNames: ["module"], registers: [this.registry] });
  readonly consumerLagSeconds = new Histogram({ name: "selaras_consumer_lag_seconds", help: "Time from outbox commit to the consumer's inbox commit", labelNames: ["consumer"], buckets: latencyBuckets, registers: [this.registry] });
  readonly commitBatch = new Histogram({ name: "selaras_storage_commit_bodies", help: "Transaction bodies sharing one COMMIT (group commit), per module", labelNames: ["module"], buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers: [this.registry] });
  readonly eventsConsumed = new Counter({ name: "selaras_events_consumed_total", help: "Deliveries handled by consumers, by result (processed, duplicate, failed)", labelNames: ["consumer", "result"], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "selaras_process_" });
    // Under Bun, v8.getHeapSpaceStatistics() walks the heap: 15–60 ms of blocked event loop per
    // scrape (measured with a few hundred MB of heap). The per-space figures go; the heap totals
    // (process.memoryUsage) stay.
    if (process.versions.bun) {
      for (const kind of ["total", "used", "available"]) this.registry.removeSingleMetric(`selaras_process_nodejs_heap_space_size_${kind}_bytes`);
    }
  }

  /**
   * An RPC observer for one transport: records each call's latency under its service, method and
   * code. Label children are cached, so the hot path does no label hashing.
   */
  rpcObserver(transport: string): (method: DescMethod, code: Code | undefined, seconds: number) => void {
    const children = new Map<DescMethod, Map<Code | undefined, { observe(v: number): void }>>();
    return (method, code, seconds) => {
      let byCode = children.get(method);
      if (!byCode) children.set(method, (byCode = new Map()));
      let child = byCode.get(code);
      if (!child) {
        child = this.rpcDuration.labels({ service: method.parent.typeName, method: method.name, code: code === undefined ? "ok" : Code[code]!, transport });
        byCode.set(code, child);
      }
      child.observe(seconds);
    };
  }

  /** A gauge whose value is read at scrape time. @example metrics.gaugeFn("x", "help", ["module"], async (set) => set({ module: "a" }, 1)) */
  gaugeFn(name: string, help: string, labelNames: string[], collect: (set: (labels: Record<string, string>, value: number) => void) => void | Promise<void>): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset();
        try {
          await collect((labels, value) => this.set(labels, value));
        } catch {
          // A source that cannot answer (the bus during an outage) leaves its gauge empty for this
          // scrape instead of failing the whole of /metrics; /readyz reports the outage.
          this.reset();
        }
      },
    });
  }

  /** A counter a module defines (its name should start with `selaras_`). @example metrics.counter("selaras_saga_transitions_total", "…", ["to"]) */
  counter(name: string, help: string, labelNames: string[]): Counter<string> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  readonly #included: Array<() => Promise<MetricObjectWithValues<MetricValue<string>>[]>> = [];

  /**
   * Adds metrics gathered elsewhere (a module thread's registry) to what `text()` exposes; series
   * with the same name and labels are summed. A source that fails is left out of that scrape.
   */
  include(source: () => Promise<MetricObjectWithValues<MetricValue<string>>[]>): void {
    this.#included.push(source);
  }

  async text(): Promise<string> {
    if (this.#included.length === 0) return this.registry.metrics();
    const theirs = await Promise.all(this.#included.map((s) => s().catch(() => [])));
    // Aggregating drops a metric marked "omit" (the process start time); here it is only ours.
    const mine = (await this.registry.getMetricsAsJSON()).map((m) => (m.aggregator === "omit" ? { ...m, aggregator: "first" as const } : m));
    return AggregatorRegistry.aggregate([mine, ...theirs]).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
