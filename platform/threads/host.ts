// The main thread's side of a module thread (threads.workers, docs/adr/0017): starts it, serves
// it the embedded bus, forwards HTTP to its routes, and asks it for metrics, readiness, settle
// and stop.
import { MessageChannel, Worker } from "node:worker_threads";
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import { serveBus } from "../bus/port.ts";
import type { Bus } from "../bus/types.ts";
import type { PlatformConfig } from "../config/schema.ts";
import type { Logger } from "../observability/logger.ts";
import { fromWire, type FromThread, type ThreadData, type ThreadOp, type ThreadRoute, type ToThread } from "./protocol.ts";

/** How long a thread may take to boot (open and migrate its modules' files, start them). */
const START_TIMEOUT_MS = 60_000;
/** How long a stopped thread may take to end by itself before it is terminated. */
const EXIT_TIMEOUT_MS = 5_000;

export interface ModuleThreadOptions {
  /** The thread's entry module: the binary's module-thread.ts, which calls `runModuleThread`. */
  readonly entry: string | URL;
  readonly modules: readonly string[];
  /** The process's configuration (its `threads.workers` is not passed on). */
  readonly config: PlatformConfig;
  /** The main thread's bus: served to the thread when embedded (the log keeps one writer). */
  readonly bus: Bus;
  readonly logger: Logger;
  /** Told when the thread ends without being stopped (its modules are gone). */
  readonly onLost: (err: Error) => void;
}

type Pending = { resolve(v: unknown): void; reject(e: Error): void };
type Streaming = { head(status: number, headers: [string, string][]): void; chunk(d: Uint8Array): void; end(err?: Error): void };

/** One running module thread, as the main thread sees it. */
export class ModuleThread {
  /** The routes its modules serve (forwarded by the main thread's app). */
  routes: readonly ThreadRoute[] = [];
  /** The read models (consumers) its modules host. */
  readModels: readonly string[] = [];
  readonly name: string;
  #nextId = 1;
  readonly #calls = new Map<number, Pending>();
  readonly #fetches = new Map<number, Streaming>();
  #stopping = false;
  #lost: Error | undefined;
  readonly #exited: Promise<void>;

  private constructor(
    readonly modules: readonly string[],
    private readonly worker: Worker,
    private readonly control: MessagePort,
    private readonly busHost: { close(): Promise<void> } | undefined,
  ) {
    this.name = `thread(${modules.join(", ")})`;
    this.#exited = new Promise<void>((r) => worker.once("exit", () => r()));
  }

  /** Starts the thread and resolves once its modules run (or rejects with why they could not). */
  static async start(opts: ModuleThreadOptions): Promise<ModuleThread> {
    const control = new MessageChannel();
    const busChannel = opts.bus.kind === "embedded" ? new MessageChannel() : undefined;
    const data: ThreadData = {
      // Its own modules' slices only: a slice of a module hosted elsewhere is an error where it boots.
      config: { ...opts.config, threads: { workers: [] }, modules: Object.fromEntries(Object.entries(opts.config.modules).filter(([m]) => opts.modules.includes(m))) },
      modules: opts.modules,
      control: control.port2 as unknown as MessagePort,
      bus: busChannel?.port2 as unknown as MessagePort | undefined,
    };
    const transferList = busChannel ? [control.port2, busChannel.port2] : [control.port2];
    const worker = new Worker(opts.entry, { workerData: data, transferList, name: `selaras ${opts.modules.join(",")}` } as ConstructorParameters<typeof Worker>[1]);
    const busHost = busChannel ? serveBus(opts.bus, busChannel.port1 as unknown as MessagePort) : undefined;
    const thread = new ModuleThread(opts.modules, worker, control.port1 as unknown as MessagePort, busHost);
    await thread.#boot(opts);
    return thread;
  }

  #boot(opts: ModuleThreadOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let started = false;
      const timer = setTimeout(() => fail(new Error(`${this.name} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        if (!started) {
          started = true;
          void this.#shutDown().finally(() => reject(err));
          return;
        }
        if (this.#stopping || this.#lost) return;
        this.#lost = err;
        for (const p of this.#calls.values()) p.reject(err);
        for (const f of this.#fetches.values()) f.end(err);
        this.#calls.clear();
        this.#fetches.clear();
        opts.logger.error("module thread lost: its modules no longer run", { modules: this.modules, err });
        opts.onLost(err);
      };
      this.worker.on("error", (err) => fail(new Error(`${this.name} failed: ${err.message}`, { cause: err })));
      this.worker.on("exit", (code) => fail(new Error(`${this.name} exited (code ${code})`)));
      this.control.addEventListener("message", (event) => {
        const m = (event as MessageEvent<FromThread>).data;
        switch (m.t) {
          case "started":
            started = true;
            clearTimeout(timer);
            this.routes = m.routes;
            this.readModels = m.readModels;
            resolve();
            return;
          case "failed":
            fail(new Error(`${this.name} could not start: ${m.error.message}`));
            return;
          case "result": {
            const p = this.#calls.get(m.id);
            this.#calls.delete(m.id);
            if (m.error) p?.reject(fromWire(m.error));
            else p?.resolve(m.value);
            return;
          }
          case "head":
            this.#fetches.get(m.id)?.head(m.status, m.headers);
            return;
          case "chunk":
            this.#fetches.get(m.id)?.chunk(m.data);
            return;
          case "end":
            this.#fetches.get(m.id)?.end(m.error && fromWire(m.error));
            this.#fetches.delete(m.id);
            return;
        }
      });
      this.control.start();
    });
  }

  #post(m: ToThread): void {
    if (this.#lost) throw this.#lost;
    this.control.postMessage(m);
  }

  /** Asks the thread's platform for `op`. */
  call<T>(op: ThreadOp, arg?: number): Promise<T> {
    if (this.#lost) return Promise.reject(this.#lost);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.control.postMessage({ t: "call", id, op, arg } satisfies ToThread);
    });
  }

  /** Serves `req` with the thread's app, in the trace `traceparent` names; the body streams back as the thread writes it. */
  async fetch(req: Request, traceparent?: string): Promise<Response> {
    const id = this.#nextId++;
    const body = req.body ? await req.arrayBuffer() : undefined;
    return new Promise<Response>((resolve, reject) => {
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      let headed = false;
      // The client went away (before or during the answer): the thread stops serving it.
      const abort = () => {
        if (this.#fetches.delete(id) && !this.#lost) this.control.postMessage({ t: "abort", id } satisfies ToThread);
      };
      const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c), cancel: abort });
      this.#fetches.set(id, {
        head: (status, headers) => {
          headed = true;
          // A null-body status takes no stream.
          resolve(new Response(status === 204 || status === 304 ? null : stream, { status, headers }));
        },
        chunk: (d) => controller.enqueue(d),
        end: (err) => {
          if (!headed) return reject(err ?? new Error(`${this.name} answered no response`));
          if (err) controller.error(err);
          else controller.close();
        },
      });
      req.signal?.addEventListener("abort", abort, { once: true });
      try {
        const headers = [...req.headers].filter(([k]) => traceparent === undefined || k !== "traceparent");
        if (traceparent !== undefined) headers.push(["traceparent", traceparent]);
        this.#post({ t: "fetch", id, method: req.method, url: req.url, headers, body });
      } catch (err) {
        this.#fetches.delete(id);
        reject(err);
      }
    });
  }

  /** Its metrics, for the process's /metrics (see `threadMetrics`). */
  metrics(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.call("metrics");
  }

  /** Stops the thread's platform (its consumers, relays, storage), then the thread. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (!this.#lost) await this.call("stop");
    await this.#shutDown();
  }

  async #shutDown(): Promise<void> {
    this.#stopping = true;
    // A stopped thread ends by itself once its ports close, its last log lines written; one that
    // does not (or failed) is terminated.
    this.control.close();
    await this.busHost?.close();
    const timer = setTimeout(() => void this.worker.terminate(), this.#lost ? 0 : EXIT_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** Metrics a thread's registry holds that the main thread already reports for the whole process. */
function coveredByMain(name: string, embeddedBus: boolean): boolean {
  // The process (CPU, memory, event loop of the whole process is the main one's view) and HTTP
  // (the main thread times every forwarded request) are the main thread's; so are the embedded
  // bus's per-consumer gauges, which the main thread's bus computes for every consumer.
  return name.startsWith("selaras_process_") || name.startsWith("selaras_http_") || (embeddedBus && (name === "selaras_consumer_lag_events" || name === "selaras_dead_letters"));
}

/** A thread's metrics without those the main thread reports itself. */
export async function threadMetrics(thread: ModuleThread, embeddedBus: boolean): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
  return (await thread.metrics()).filter((m) => !coveredByMain(m.name, embeddedBus));
}

/** The module groups of `threads.workers`, checked against the modules this process hosts. */
export function planThreads(
  workers: readonly (readonly string[])[],
  modules: readonly { name: string; services?: readonly { typeName: string }[]; dependsOn?: readonly { typeName: string }[] }[],
): { main: Set<string>; groups: string[][] } {
  const problems: string[] = [];
  const hosted = new Set(modules.map((m) => m.name));
  const groupOf = new Map<string, number>();
  workers.forEach((group, i) => {
    for (const name of group) {
      if (!hosted.has(name)) problems.push(`threads.workers[${i}]: module "${name}" is not hosted by this process (${[...hosted].join(", ")})`);
      else if (groupOf.has(name)) problems.push(`threads.workers[${i}]: module ${name} is already on thread ${groupOf.get(name)}`);
      else groupOf.set(name, i);
    }
  });
  // A call across threads would need a transport between them; none is built, so callers and callees share a thread.
  const implementer = new Map<string, string>();
  for (const m of modules) for (const s of m.services ?? []) implementer.set(s.typeName, m.name);
  for (const m of modules) {
    for (const d of m.dependsOn ?? []) {
      const callee = implementer.get(d.typeName);
      if (callee === undefined || groupOf.get(callee) === groupOf.get(m.name)) continue;
      const where = (name: string) => (groupOf.has(name) ? `thread ${groupOf.get(name)}` : "the main thread");
      problems.push(`threads.workers: module ${m.name} (${where(m.name)}) calls ${d.typeName} of module ${callee} (${where(callee)}); calls between threads are not supported, put them on the same thread`);
    }
  }
  if (problems.length > 0) throw new Error(`invalid threads:\n  - ${problems.join("\n  - ")}`);
  return { main: new Set(modules.map((m) => m.name).filter((n) => !groupOf.has(n))), groups: workers.map((g) => [...g]) };
}
