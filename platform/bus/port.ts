// A `Bus` on the far side of a `MessagePort`: modules on a worker thread use the main thread's bus,
// so the embedded log keeps its one writer (ADR 0017). The protocol, one message each way per
// request (a batch of events is one message), every request carrying a numeric id its sender picked:
//   worker → host  { t: "call", id, method, args }      a `Remote` method below, answered by a reply
//   host → worker  { t: "batch", id, sub, deliveries }  a subscription's batch; the reply's value is
//                                                       one `WireResult` per delivery
//   either way     { t: "reply", id, value } | { t: "reply", id, error: { name, message, stack, cause } }
// Subscriptions and retained reads are named by ids the worker picks, so it never waits to use one;
// a retained read is pulled (read, then next … until null, or return). Port messages keep their
// order, so a subscribe is in place on the host before any call naming it arrives. Either side
// closing the port ends the other: the worker rejects what is pending, the host stops what it served.
import type { Logger } from "../observability/logger.ts";
import type { Bus, BusPosition, BusSubscription, DeadLetter, Delivery, DeliveryResult, EventEnvelope, RetainedBatch, RetainedLog, SubscribeOptions } from "./types.ts";

/** What the worker calls on the host. */
interface Remote {
  publish(events: readonly EventEnvelope[]): Promise<void>;
  subscribe(sub: number, opts: { consumer: string; types: readonly string[]; retain?: boolean; lingerMs?: number }): void;
  stop(sub: number): Promise<void>;
  pause(sub: number): Promise<BusPosition>;
  resume(sub: number): void;
  position(sub: number): Promise<BusPosition>;
  deadLetters(consumer?: string): Promise<DeadLetter[]>;
  redrive(consumer: string, seq?: number): Promise<number>;
  /** Only the consumers subscribed through this port: the main thread reports its own. */
  consumerLag(): Promise<[string, number][]>;
  ping(): Promise<void>;
  head(types: readonly string[]): Promise<BusPosition>;
  gaps(types: readonly string[]): Promise<string[]>;
  count(types: readonly string[], after: BusPosition, upTo: BusPosition): Promise<number>;
  read(it: number, types: readonly string[], after: BusPosition, upTo: BusPosition, batchSize: number): void;
  /** The next batch of retained read `it`, or null once it is done. */
  next(it: number): Promise<RetainedBatch | null>;
  return(it: number): Promise<void>;
}

/** An error as it crosses: rebuilt on the other side as an `Error` of the same name and message. */
export type WireError = { name: string; message: string; stack?: string; cause?: WireError };
type WireResult = { ok: true } | { ok: false; error: WireError };
type Reply = { t: "reply"; id: number; value?: unknown; error?: WireError };
type ToHost = { [K in keyof Remote]: { t: "call"; id: number; method: K; args: Parameters<Remote[K]> } }[keyof Remote] | Reply;
type ToWorker = { t: "batch"; id: number; sub: number; deliveries: Delivery[] } | Reply;

/** A request that cannot be answered any more: the port was closed (by either side). */
export class BusPortClosedError extends Error {
  override name = "BusPortClosedError";
  constructor() {
    super("bus port closed");
  }
}

export function toWire(err: unknown, depth = 0): WireError {
  if (!(err instanceof Error)) return { name: "Error", message: String(err) };
  const cause = err.cause !== undefined && depth < 4 ? toWire(err.cause, depth + 1) : undefined;
  return { name: err.name, message: err.message, stack: err.stack, ...(cause && { cause }) };
}

export function fromWire(w: WireError): Error {
  const err = new Error(w.message, w.cause && { cause: fromWire(w.cause) });
  err.name = w.name;
  if (w.stack) err.stack = w.stack;
  return err;
}

const toWireResult = (r: DeliveryResult): WireResult => (r.ok ? { ok: true } : { ok: false, error: toWire(r.error) });
const fromWireResult = (r: WireResult): DeliveryResult => (r.ok ? r : { ok: false, error: fromWire(r.error) });

/** Structured clone copies a typed array's whole backing buffer: a payload viewing a bigger one travels as its own copy. */
function slim<T extends { envelope: EventEnvelope }>(x: T): T {
  const p = x.envelope.payload;
  return p.byteLength === p.buffer.byteLength ? x : { ...x, envelope: { ...x.envelope, payload: new Uint8Array(p) } };
}

/** Runs `fn`, a synchronous throw included, as a promise. */
const attempt = <T>(fn: () => T | Promise<T>) => new Promise<T>((resolve) => resolve(fn()));

/** Rejects every failure but the port closing (already answered for), first one first. */
function rethrow(settled: PromiseSettledResult<unknown>[]): void {
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected" && !(r.reason instanceof BusPortClosedError));
  if (failed) throw failed.reason;
}

/**
 * Serves `bus` to a `PortBus` on the other end of `port` (main thread side). `close()` stops the
 * subscriptions opened through the port (a batch in flight fails, so the bus delivers it again
 * later), ends its retained reads and closes the port; it does not close `bus`. The worker closing
 * the port closes this too.
 *
 * @example const served = serveBus(bus, worker1.busPort); … await served.close(); await bus.close();
 */
export function serveBus(bus: Bus, port: MessagePort): { close(): Promise<void> } {
  const subs = new Map<number, { consumer: string; sub: BusSubscription }>();
  const reads = new Map<number, { it: AsyncIterator<RetainedBatch>; abort: AbortController }>();
  const batches = new Map<number, { size: number; resolve(r: readonly DeliveryResult[]): void; reject(e: Error): void }>();
  let batchIds = 0;
  let closing: Promise<void> | undefined;
  const failAll = (n: number): DeliveryResult[] => Array.from({ length: n }, () => ({ ok: false, error: new BusPortClosedError() }));

  const deliver = (sub: number, batch: readonly Delivery[]) =>
    new Promise<readonly DeliveryResult[]>((resolve, reject) => {
      if (closing) return resolve(failAll(batch.length));
      const id = ++batchIds;
      port.postMessage({ t: "batch", id, sub, deliveries: batch.map(slim) } satisfies ToWorker);
      batches.set(id, { size: batch.length, resolve, reject });
    });
  const served = (sub: number) => {
    const s = subs.get(sub)?.sub;
    if (!s) throw new Error(`bus port: no subscription ${sub}`);
    return s;
  };
  const unsupported = (op: string) => new Error(`bus port: the ${bus.kind} bus cannot ${op} a subscription`);
  const log = () => {
    if (!bus.retained) throw new Error(`bus port: the ${bus.kind} bus retains no events`);
    return bus.retained;
  };

  const remote: Remote = {
    publish: (events) => bus.publish(events),
    subscribe(sub, { consumer, types, retain, lingerMs }) {
      subs.set(sub, { consumer, sub: bus.subscribe({ consumer, types, retain, lingerMs, handle: (batch) => deliver(sub, batch) }) });
    },
    async stop(sub) {
      const s = subs.get(sub);
      subs.delete(sub);
      await s?.sub.stop(); // none: its subscribe failed, nothing to stop
    },
    async pause(sub) {
      const s = served(sub);
      if (!s.pause) throw unsupported("pause");
      return s.pause();
    },
    resume: (sub) => served(sub).resume?.(),
    async position(sub) {
      const s = served(sub);
      if (!s.position) throw unsupported("position");
      return s.position();
    },
    deadLetters: async (consumer) => (await bus.deadLetters(consumer)).map(slim),
    redrive: (consumer, seq) => bus.redrive(consumer, seq),
    async consumerLag() {
      const mine = new Set([...subs.values()].map((s) => s.consumer));
      return [...(await bus.consumerLag())].filter(([c]) => mine.has(c));
    },
    ping: () => bus.ping(),
    head: (types) => log().head(types),
    gaps: (types) => log().gaps(types),
    count: (types, after, upTo) => log().count(types, after, upTo),
    read(it, types, after, upTo, batchSize) {
      const abort = new AbortController();
      reads.set(it, { it: log().read(types, after, upTo, { batchSize, signal: abort.signal })[Symbol.asyncIterator](), abort });
    },
    async next(it) {
      const r = reads.get(it);
      if (!r) throw new Error(`bus port: no retained read ${it}`);
      const n = await r.it.next().catch((err: unknown) => (reads.delete(it), Promise.reject(err)));
      if (!n.done) return { ...n.value, deliveries: n.value.deliveries.map(slim) };
      reads.delete(it);
      return null;
    },
    async return(it) {
      const r = reads.get(it);
      reads.delete(it);
      r?.abort.abort();
      await r?.it.return?.();
    },
  };

  const onMessage = (e: Event) => {
    const m = (e as MessageEvent).data as ToHost;
    if (m.t === "reply") {
      const b = batches.get(m.id);
      batches.delete(m.id);
      if (m.error) b?.reject(fromWire(m.error));
      else b?.resolve((m.value as WireResult[]).map(fromWireResult));
      return;
    }
    const call = remote[m.method] as (...args: unknown[]) => unknown;
    attempt(() => call(...m.args))
      .then((value) => port.postMessage({ t: "reply", id: m.id, value } satisfies ToWorker))
      .catch((err: unknown) => port.postMessage({ t: "reply", id: m.id, error: toWire(err) } satisfies ToWorker));
  };
  const close = () =>
    (closing ??= (async () => {
      port.removeEventListener("message", onMessage);
      port.removeEventListener("close", onClose);
      // Stop first: a batch failed below is then not retried at once, but after a restart.
      const stopping = [...subs.values()].map((s) => s.sub.stop());
      subs.clear();
      for (const b of batches.values()) b.resolve(failAll(b.size));
      batches.clear();
      const ending = [...reads.values()].map(async (r) => (r.abort.abort(), await r.it.return?.()));
      reads.clear();
      port.close();
      rethrow(await Promise.allSettled([...stopping, ...ending]));
    })());
  // The worker closed the port: stop serving now; a failure is kept for the owner's own `close()`.
  const onClose = () => void close().catch(() => {});
  port.addEventListener("message", onMessage);
  port.addEventListener("close", onClose);
  port.start();
  return { close };
}

/**
 * The bus as seen from a worker thread: every call crosses `port` to `serveBus` on the main thread.
 * A subscription's `handle` runs here, a batch per message. Calls pending when the port closes
 * reject with `BusPortClosedError`. No `prune`: the main thread prunes its log.
 *
 * @example const bus = new PortBus(workerData.busPort, { logger }); bus.subscribe({ consumer, types, handle });
 */
export class PortBus implements Bus {
  readonly kind = "embedded";
  readonly retained: RetainedLog;
  readonly #port: MessagePort;
  readonly #logger: Logger | undefined;
  #ids = 0;
  readonly #calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  readonly #handles = new Map<number, SubscribeOptions["handle"]>();
  readonly #subs = new Map<string, BusSubscription>();
  #closed = false;
  #closing: Promise<void> | undefined;

  /** `logger` takes the failures no caller awaits (a subscribe the host refused, a resume); without one they are unhandled rejections. */
  constructor(port: MessagePort, opts: { logger?: Logger } = {}) {
    this.#port = port;
    this.#logger = opts.logger;
    this.retained = {
      head: (types) => this.#call("head", types),
      gaps: (types) => this.#call("gaps", types),
      count: (types, after, upTo) => this.#call("count", types, after, upTo),
      read: (types, after, upTo, o) => this.#read(types, after, upTo, o),
    };
    port.addEventListener("message", this.#onMessage);
    port.addEventListener("close", this.#shut);
    port.start();
  }

  publish(events: readonly EventEnvelope[]): Promise<void> {
    return this.#call("publish", events.map((envelope) => slim({ envelope }).envelope));
  }

  subscribe(opts: SubscribeOptions): BusSubscription {
    const { consumer, types, retain, lingerMs, handle } = opts;
    if (this.#closed) throw new BusPortClosedError();
    if (this.#subs.has(consumer)) throw new Error(`consumer ${consumer} is subscribed twice`);
    const id = ++this.#ids;
    const forget = () => (this.#handles.delete(id), this.#subs.delete(consumer));
    let failed: Error | undefined;
    this.#handles.set(id, handle);
    this.#call("subscribe", id, { consumer, types, retain, lingerMs }).catch((err: Error) => {
      failed = err;
      forget();
      this.#report("bus subscription failed", { consumer }, err);
    });
    // Calls go out at once (the port keeps their order); a failed subscribe is their better error.
    const op = <T>(p: Promise<T>) => p.catch((err: unknown) => Promise.reject(failed ?? err));
    let stopped: Promise<void> | undefined;
    const sub: BusSubscription = {
      stop: () => (stopped ??= this.#closed ? Promise.resolve() : this.#call("stop", id).finally(forget)),
      pause: () => op(this.#call("pause", id)),
      resume: () => void this.#call("resume", id).catch((err: unknown) => this.#report("bus subscription resume failed", { consumer }, failed ?? err)),
      position: () => op(this.#call("position", id)),
    };
    this.#subs.set(consumer, sub);
    return sub;
  }

  deadLetters(consumer?: string): Promise<DeadLetter[]> {
    return this.#call("deadLetters", consumer);
  }

  redrive(consumer: string, seq?: number): Promise<number> {
    return this.#call("redrive", consumer, seq);
  }

  async consumerLag(): Promise<Map<string, number>> {
    return new Map(await this.#call("consumerLag"));
  }

  ping(): Promise<void> {
    return this.#call("ping");
  }

  /** Stops this side's subscriptions (each after its batch in flight), then closes the port. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const stops = await Promise.allSettled([...this.#subs.values()].map((s) => s.stop()));
      this.#shut();
      rethrow(stops);
    })());
  }

  async *#read(types: readonly string[], after: BusPosition, upTo: BusPosition, opts: { batchSize: number; signal?: AbortSignal }): AsyncGenerator<RetainedBatch> {
    opts.signal?.throwIfAborted();
    const it = ++this.#ids;
    await this.#call("read", it, types, after, upTo, opts.batchSize);
    let open = true;
    try {
      for (;;) {
        const batch = await abortable(this.#call("next", it), opts.signal);
        if (!batch) return void (open = false);
        yield batch;
      }
    } finally {
      // Stopped early (aborted, a break, an error): the host's iterator ends too, once its batch in
      // the making is done; this one ends now.
      if (open && !this.#closed) this.#call("return", it).catch((err: unknown) => this.#report("bus retained read did not close", {}, err));
    }
  }

  #report(msg: string, fields: Record<string, unknown>, err: unknown): void {
    if (err instanceof BusPortClosedError) return; // the bus is closed, which its owner knows
    if (this.#logger) this.#logger.error(msg, { ...fields, err });
    else void Promise.reject(err);
  }

  #call<K extends keyof Remote>(method: K, ...args: Parameters<Remote[K]>): Promise<Awaited<ReturnType<Remote[K]>>> {
    if (this.#closed) return Promise.reject(new BusPortClosedError());
    const id = ++this.#ids;
    return new Promise((resolve, reject) => {
      this.#port.postMessage({ t: "call", id, method, args } as ToHost);
      this.#calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
  }

  readonly #onMessage = (e: Event) => {
    const m = (e as MessageEvent).data as ToWorker;
    if (m.t === "reply") {
      const c = this.#calls.get(m.id);
      this.#calls.delete(m.id);
      if (m.error) c?.reject(fromWire(m.error));
      else c?.resolve(m.value);
      return;
    }
    const handle = this.#handles.get(m.sub);
    attempt(() => (handle ? handle(m.deliveries) : m.deliveries.map((): DeliveryResult => ({ ok: false, error: new Error("subscription stopped") }))))
      .then((results) => this.#port.postMessage({ t: "reply", id: m.id, value: results.map(toWireResult) } satisfies ToHost))
      .catch((err: unknown) => this.#port.postMessage({ t: "reply", id: m.id, error: toWire(err) } satisfies ToHost));
  };

  readonly #shut = () => {
    if (this.#closed) return;
    this.#closed = true;
    this.#port.removeEventListener("message", this.#onMessage);
    this.#port.removeEventListener("close", this.#shut);
    this.#port.close();
    for (const c of this.#calls.values()) c.reject(new BusPortClosedError());
    this.#calls.clear();
    this.#handles.clear();
    this.#subs.clear();
  };
}

/** `p`, or the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
