/**
 * The order saga, measured end to end: each order the load placed is read back once the system
 * has settled (`GET /api/v1/orders/{id}`: status, `createdAt` and the saga's history with the
 * time of each state), so nothing polls the server while the load runs. Figures:
 *  - 202 → CONFIRMED: the CONFIRMED entry's time minus the order's `createdAt`. The server stamps
 *    both with `Date.now()` right before the transaction that commits the state (PlaceOrder's,
 *    whose commit precedes the 202; the saga step's that confirms), so it is commit to commit,
 *    in whole milliseconds, like the read-model lag of the other steps;
 *  - send → CONFIRMED: from the bench's own send time (`Date.now()`, same clock) — an upper
 *    bound that also counts the HTTP request and PlaceOrder's RPC calls;
 *  - confirmed orders/s: orders CONFIRMED / (last CONFIRMED − start of the load).
 */
import type { Accepted } from "./load.ts";
import { percentile, round } from "./util.ts";

/** One order as read back: its status and, when confirmed, when (epoch ms); `createdAt` when placed. */
export interface SagaOutcome {
  readonly status: string;
  readonly createdAt?: number;
  readonly confirmedAt?: number;
  /** Set when the order could not be read. */
  readonly error?: string;
}

interface OrderJson {
  status?: string;
  createdAt?: string;
  saga?: { history?: Array<{ at: string; state: string }> };
}

/** The outcome of one order from its `GET /api/v1/orders/{id}` body. */
export function outcomeOf(body: OrderJson): SagaOutcome {
  const status = String(body.status ?? "?");
  const createdAt = body.createdAt ? Date.parse(body.createdAt) : undefined;
  const confirmed = body.saga?.history?.find((h) => h.state === "CONFIRMED");
  return { status, createdAt, confirmedAt: confirmed ? Date.parse(confirmed.at) : undefined };
}

/** Reads every order back from the process hosting orders, `concurrency` requests at a time. */
export async function readOutcomes(ordersUrl: string, ids: readonly string[], concurrency = 8): Promise<SagaOutcome[]> {
  const out: SagaOutcome[] = new Array(ids.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ids.length) {
        const i = next++;
        try {
          const res = await fetch(`${ordersUrl}/api/v1/orders/${ids[i]}`);
          const text = await res.text();
          out[i] = res.ok ? outcomeOf(JSON.parse(text) as OrderJson) : { status: "?", error: `${res.status} ${text.slice(0, 200)}` };
        } catch (err) {
          out[i] = { status: "?", error: `fetch failed: ${(err as Error).message}` };
        }
      }
    }),
  );
  return out;
}

/** Percentiles in ms of the finite values; `null` when there are none. */
function spread(xs: number[]) {
  const f = (q: number) => (xs.length > 0 ? round(percentile(xs, q)) : null);
  return { p50Ms: f(0.5), p99Ms: f(0.99), maxMs: f(1) };
}

/**
 * The saga figures of one load. `loadStartMs`: `Date.now()` when the load began (for the
 * confirmed rate). An order not CONFIRMED has no latency: a p99 over the confirmed ones alone
 * would flatter, so when any accepted order is not CONFIRMED `complete` is false and the report
 * says so instead of passing the bar.
 */
export function sagaFigures(placed: Accepted, outcomes: readonly SagaOutcome[], loadStartMs: number) {
  const byStatus: Record<string, number> = {};
  const commit: number[] = [];
  const fromSend: number[] = [];
  const fromReply: number[] = [];
  const errors: string[] = [];
  let lastConfirmed = -Infinity;
  outcomes.forEach((o, i) => {
    byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
    if (o.error && errors.length < 5) errors.push(o.error);
    if (o.status !== "CONFIRMED" || o.confirmedAt === undefined) return;
    if (o.createdAt !== undefined) commit.push(o.confirmedAt - o.createdAt);
    fromSend.push(o.confirmedAt - placed.sentAt[i]!);
    fromReply.push(o.confirmedAt - placed.repliedAt[i]!);
    lastConfirmed = Math.max(lastConfirmed, o.confirmedAt);
  });
  const confirmed = commit.length;
  const lastConfirmedAfterSec = confirmed > 0 ? (lastConfirmed - loadStartMs) / 1000 : null;
  return {
    orders: outcomes.length,
    byStatus,
    confirmed,
    /** Every accepted order ended CONFIRMED (the seed restocks and gives ample credit: none may be cancelled). */
    complete: confirmed === outcomes.length,
    /** 202 → CONFIRMED, server stamps (commit to commit), ms. */
    placedToConfirmed: spread(commit),
    /** The bench's send → CONFIRMED, ms: an upper bound. */
    sendToConfirmed: spread(fromSend),
    /**
     * The bench's receipt of the 202 → CONFIRMED, ms. A lower bound when the bench is slow to see
     * replies; negative when the saga finished before the bench read the 202 (`beforeReply`).
     */
    replyToConfirmed: { ...spread(fromReply), beforeReply: fromReply.filter((x) => x < 0).length },
    lastConfirmedAfterSec: lastConfirmedAfterSec === null ? null : round(lastConfirmedAfterSec),
    confirmedPerSec: lastConfirmedAfterSec && lastConfirmedAfterSec > 0 ? round(confirmed / lastConfirmedAfterSec, 0) : null,
    readErrors: errors,
  };
}

export type SagaFigures = ReturnType<typeof sagaFigures>;
