// The module thread's side: boots a platform with the thread's modules and answers the main
// thread (HTTP forwarded to the modules' routes, metrics, readiness, settle, stop).
import { workerData } from "node:worker_threads";
import { PortBus } from "../bus/port.ts";
import { createLogger } from "../observability/logger.ts";
import { capturesOf } from "../cdc/capture.ts";
import type { ModuleManifest } from "../module.ts";
import { createPlatform, type Platform } from "../platform.ts";
import { toWire, type FromThread, type ThreadData, type ThreadOp, type ToThread } from "./protocol.ts";

/**
 * Runs the modules `workerData` names, out of `known` (the binary's modules). Called by the
 * binary's thread entry (module-thread.ts); the main thread starts it (see `startModuleThread`).
 */
export async function runModuleThread(known: readonly ModuleManifest<any>[]): Promise<void> {
  const data = workerData as ThreadData;
  const control = data.control;
  const send = (m: FromThread) => control.postMessage(m);
  const byName = new Map(known.map((m) => [m.name, m]));
  let platform: Platform;
  try {
    const modules = data.modules.map((name) => {
      const m = byName.get(name);
      if (!m) throw new Error(`no module ${name} in this binary`);
      return m;
    });
    platform = await createPlatform({
      config: data.config,
      modules,
      captures: capturesOf(known),
      ...(data.bus && { bus: new PortBus(data.bus, { logger: createLogger({ level: data.config.logLevel, base: { service: data.config.serviceName, component: "bus" } }) }) }),
    });
  } catch (err) {
    send({ t: "failed", error: toWire(err) });
    control.close();
    return;
  }

  const inflight = new Map<number, AbortController>();
  const forward = async (m: Extract<ToThread, { t: "fetch" }>) => {
    const abort = new AbortController();
    inflight.set(m.id, abort);
    try {
      const res = await platform.fetch(new Request(m.url, { method: m.method, headers: m.headers, body: m.body, signal: abort.signal }));
      send({ t: "head", id: m.id, status: res.status, headers: [...res.headers] });
      if (res.body) {
        const reader = res.body.getReader();
        abort.signal.addEventListener("abort", () => void reader.cancel().catch(() => {}), { once: true });
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          send({ t: "chunk", id: m.id, data: value });
        }
      }
      send({ t: "end", id: m.id });
    } catch (err) {
      send({ t: "end", id: m.id, error: toWire(err) });
    } finally {
      inflight.delete(m.id);
    }
  };
  const ops: Record<ThreadOp, (arg?: number) => Promise<unknown>> = {
    metrics: () => platform.metrics.registry.getMetricsAsJSON(),
    ready: () => platform.ready(),
    settle: (timeoutMs) => platform.settle(timeoutMs),
    stop: async () => {
      await platform.stop();
      setImmediate(() => control.close());
    },
  };
  control.addEventListener("message", (event) => {
    const m = (event as MessageEvent<ToThread>).data;
    if (m.t === "fetch") void forward(m);
    else if (m.t === "abort") inflight.get(m.id)?.abort(new Error("the client went away"));
    else
      ops[m.op](m.arg).then(
        (value) => send({ t: "result", id: m.id, value }),
        (err: unknown) => send({ t: "result", id: m.id, error: toWire(err) }),
      );
  });
  control.start();
  send({ t: "started", routes: platform.moduleRoutes, readModels: platform.readModels.names() });
}
