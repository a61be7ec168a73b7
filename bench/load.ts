/**
 * Load generators of the end-to-end phases. They run in the bench process with Bun's fetch
 * (keep-alive connections, reused from its pool), so they share the machine's cores with the server.
 */
import { Samples, sleep } from "./util.ts";

/** A prepared request: who orders (to check the read model later) and the JSON body. */
export interface OrderBody {
  readonly customer: number;
  readonly json: string;
  /** Where this request goes, when not the load's `url` (e.g. `PUT /api/v1/products/{id}`). */
  readonly url?: string;
}

/** How the requests of a load are sent and judged (default: `POST`, accepted on 202, nothing recorded). */
export interface RequestOptions {
  readonly method?: "POST" | "PUT";
  /** The status that counts as accepted (default 202). */
  readonly okStatus?: number;
  /**
   * Keep, for every accepted request, the `id` of the JSON reply and the wall-clock times
   * (`Date.now()`, the clock the server stamps with) of its send and reply — to follow orders
   * to the end of their saga afterwards (`saga.ts`).
   */
  readonly record?: boolean;
}

/** Accepted requests of a load, when recorded: reply `id`, and send and reply times in epoch ms. */
export interface Accepted {
  readonly ids: string[];
  readonly sentAt: number[];
  readonly repliedAt: number[];
}

export interface LoadResult {
  /** Wall time from the first send to the last reply, in s. */
  seconds: number;
  /** Wall time from the first send to the last send, in s. */
  sendSeconds: number;
  sent: number;
  accepted: number;
  rejected: number;
  /** Of the rejected, refused as overloaded (429): the closed loop waits its Retry-After, as a client should. */
  throttled: number;
  /** Network/transport failures (no HTTP status). */
  failed: number;
  /** Client-observed latency of every request, send to reply, in ms. */
  latencyMs: Float64Array;
  /** Open loop only: latency from the scheduled send time (counts the generator's own lateness), in ms. */
  latencyFromScheduleMs?: Float64Array;
  maxInFlight: number;
  /** Up to five distinct rejections, for the report. */
  errors: string[];
  /** Accepted orders per customer index. */
  perCustomer: Map<number, number>;
  /** With `record`: every accepted request's reply id and times. */
  placed?: Accepted;
}

class Tally {
  sent = 0;
  accepted = 0;
  rejected = 0;
  throttled = 0;
  failed = 0;
  inFlight = 0;
  maxInFlight = 0;
  readonly latency = new Samples();
  readonly fromSchedule = new Samples();
  readonly errors = new Set<string>();
  readonly perCustomer = new Map<number, number>();
  readonly placed: Accepted | undefined;

  constructor(private readonly req: RequestOptions = {}) {
    if (req.record) this.placed = { ids: [], sentAt: [], repliedAt: [] };
  }

  /** Sends one request; resolves with how long to wait before the next one (a 429's Retry-After), in ms. */
  async post(url: string, body: OrderBody, scheduledAt?: number): Promise<number> {
    this.sent++;
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    const started = performance.now();
    const sentAt = this.placed ? Date.now() : 0;
    try {
      const res = await fetch(body.url ?? url, { method: this.req.method ?? "POST", body: body.json, headers: { "content-type": "application/json" } });
      const text = await res.text(); // read to the end so the connection goes back to the pool
      const done = performance.now();
      this.latency.push(done - started);
      if (scheduledAt !== undefined) this.fromSchedule.push(done - scheduledAt);
      if (res.status === (this.req.okStatus ?? 202)) {
        this.accepted++;
        this.perCustomer.set(body.customer, (this.perCustomer.get(body.customer) ?? 0) + 1);
        if (this.placed) {
          this.placed.repliedAt.push(Date.now());
          this.placed.sentAt.push(sentAt);
          this.placed.ids.push(String((JSON.parse(text) as { id: unknown }).id));
        }
      } else {
        this.rejected++;
        if (res.status === 429) {
          this.throttled++;
          return 1000 * Number(res.headers.get("Retry-After") ?? 1);
        }
        if (this.errors.size < 5) this.errors.add(`${res.status} ${text.slice(0, 200)}`);
      }
    } catch (err) {
      this.failed++;
      if (this.errors.size < 5) this.errors.add(`fetch failed: ${(err as Error).message}`);
    } finally {
      this.inFlight--;
    }
    return 0;
  }

  result(seconds: number, sendSeconds: number, openLoop: boolean): LoadResult {
    return {
      seconds,
      sendSeconds,
      sent: this.sent,
      accepted: this.accepted,
      rejected: this.rejected,
      throttled: this.throttled,
      failed: this.failed,
      latencyMs: this.latency.values(),
      latencyFromScheduleMs: openLoop ? this.fromSchedule.values() : undefined,
      maxInFlight: this.maxInFlight,
      errors: [...this.errors],
      perCustomer: this.perCustomer,
      placed: this.placed,
    };
  }
}

/**
 * Closed loop: `clients` workers, each sending its next order as soon as the previous one is
 * answered, until `seconds` have passed.
 */
export async function closedLoop(opts: { url: string; clients: number; seconds: number; bodies: readonly OrderBody[] } & RequestOptions): Promise<LoadResult> {
  const tally = new Tally(opts);
  const start = performance.now();
  const end = start + opts.seconds * 1000;
  let next = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const wait = Math.min(await tally.post(opts.url, opts.bodies[next++ % opts.bodies.length]!), end - performance.now());
      if (wait > 0) await sleep(wait);
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, worker));
  const seconds = (performance.now() - start) / 1000;
  return tally.result(seconds, Math.min(seconds, opts.seconds), false);
}

/**
 * Open loop: sends at a fixed `rate` per second on a schedule, whether or not earlier requests
 * were answered (so a slow server shows up as latency, not as a lower send rate).
 */
export async function openLoop(opts: { url: string; rate: number; seconds: number; bodies: readonly OrderBody[] } & RequestOptions): Promise<LoadResult> {
  const tally = new Tally(opts);
  const total = Math.round(opts.rate * opts.seconds);
  const interval = 1000 / opts.rate;
  const pending = new Set<Promise<unknown>>();
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
    while (sent < due) {
      const p = tally.post(opts.url, opts.bodies[sent % opts.bodies.length]!, start + sent * interval);
      pending.add(p);
      void p.finally(() => pending.delete(p));
      sent++;
    }
    if (sent < total) await sleep(1);
  }
  const sendSeconds = (performance.now() - start) / 1000;
  await Promise.all(pending);
  return tally.result((performance.now() - start) / 1000, sendSeconds, true);
}
