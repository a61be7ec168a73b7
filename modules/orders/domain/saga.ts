/**
 * The order-placement saga as a pure state machine:
 *
 *   AWAITING_PAYMENT --payment-processed--> AWAITING_STOCK --stock-reserved--> CONFIRMED
 *        |  payment-failed -> CANCELLED          |  stock-failed  -> COMPENSATING (refund)
 *        |  timeout -> COMPENSATING (void)        |  timeout       -> COMPENSATING (refund + release)
 *   COMPENSATING --every pending ack arrived--> CANCELLED
 *        |  compensation deadline -> the pending requests again (backoff), after the last
 *        |  attempt -> STUCK (an operator resumes it: COMPENSATING with fresh attempts)
 *
 * Messages arrive at least once and, across modules, in any order: `decide` answers undefined
 * for whatever does not move the saga (a duplicate, a late answer to a step already left), so
 * the handler records nothing.
 */

export type SagaState = "AWAITING_PAYMENT" | "AWAITING_STOCK" | "COMPENSATING" | "CONFIRMED" | "CANCELLED" | "STUCK";

/** States in which the saga is done. */
export const TERMINAL: ReadonlySet<SagaState> = new Set(["CONFIRMED", "CANCELLED"]);

export interface Saga {
  readonly orderId: string;
  readonly state: SagaState;
  /** Why it is cancelling or cancelled; "" otherwise. */
  readonly reason: string;
  /** When the current step times out (ms); undefined when done or stuck. */
  readonly deadlineAt: number | undefined;
  /** Compensations requested and not acknowledged yet. */
  readonly refundPending: boolean;
  readonly releasePending: boolean;
  /** Attempts of the current compensation so far. */
  readonly attempts: number;
  /** Bumped by every transition (optimistic concurrency; also the history entry's number). */
  readonly version: number;
}

/** What can happen to a saga. */
export type SagaInput =
  | { readonly kind: "payment-processed" }
  | { readonly kind: "payment-failed"; readonly reason: string }
  | { readonly kind: "stock-reserved" }
  | { readonly kind: "stock-failed"; readonly reason: string }
  | { readonly kind: "refunded" }
  | { readonly kind: "released" }
  | { readonly kind: "timeout" }
  | { readonly kind: "resume" };

/** What the orchestrator must send or announce after a transition. */
export type SagaCommand =
  | { readonly kind: "reserve-stock" }
  | { readonly kind: "refund"; readonly attempt: number }
  | { readonly kind: "release"; readonly attempt: number }
  | { readonly kind: "confirmed" }
  | { readonly kind: "cancelled"; readonly reason: string };

export interface Transition {
  readonly next: Saga;
  readonly commands: readonly SagaCommand[];
  /** For the history, e.g. `payment-processed`, `stock-timeout`, `refund-retried`. */
  readonly note: string;
}

/** Timeouts of the saga (modules.orders.saga). */
export interface SagaTimings {
  readonly paymentTimeoutMs: number;
  readonly stockTimeoutMs: number;
  /** Wait for a compensation's acknowledgement before the first retry; doubles per attempt. */
  readonly compensationRetryMs: number;
  readonly compensationMaxAttempts: number;
}

/** A new saga for a just-placed order. */
export function startSaga(orderId: string, now: number, t: SagaTimings): Saga {
  return { orderId, state: "AWAITING_PAYMENT", reason: "", deadlineAt: now + t.paymentTimeoutMs, refundPending: false, releasePending: false, attempts: 0, version: 1 };
}

/** The next state for `input`, or undefined when `input` does not move the saga. */
export function decide(saga: Saga, input: SagaInput, now: number, t: SagaTimings): Transition | undefined {
  const to = (patch: Partial<Saga>, commands: SagaCommand[], note: string): Transition => ({ next: { ...saga, ...patch, version: saga.version + 1 }, commands, note });
  const compensate = (reason: string, refund: boolean, release: boolean, note: string): Transition =>
    to(
      { state: "COMPENSATING", reason, refundPending: refund, releasePending: release, attempts: 1, deadlineAt: now + t.compensationRetryMs },
      [...(refund ? [{ kind: "refund", attempt: 1 } as const] : []), ...(release ? [{ kind: "release", attempt: 1 } as const] : [])],
      note,
    );
  const acknowledged = (patch: Pick<Saga, "refundPending" | "releasePending">, note: string): Transition =>
    patch.refundPending || patch.releasePending
      ? to(patch, [], note)
      : to({ ...patch, state: "CANCELLED", deadlineAt: undefined }, [{ kind: "cancelled", reason: saga.reason }], note);

  switch (saga.state) {
    case "AWAITING_PAYMENT":
      if (input.kind === "payment-processed") return to({ state: "AWAITING_STOCK", deadlineAt: now + t.stockTimeoutMs }, [{ kind: "reserve-stock" }], "payment-processed");
      if (input.kind === "payment-failed") return to({ state: "CANCELLED", reason: input.reason, deadlineAt: undefined }, [{ kind: "cancelled", reason: input.reason }], "payment-failed");
      // No answer from payments: void the payment, so a late charge charges nothing.
      if (input.kind === "timeout" && now >= saga.deadlineAt!) return compensate("payment-timeout", true, false, "payment-timeout");
      return undefined;
    case "AWAITING_STOCK":
      if (input.kind === "stock-reserved") return to({ state: "CONFIRMED", deadlineAt: undefined }, [{ kind: "confirmed" }], "stock-reserved");
      // Nothing was reserved: only the payment needs giving back.
      if (input.kind === "stock-failed") return compensate(input.reason, true, false, "stock-failed");
      // A reservation may still land: release it (or refuse it) as well as refunding.
      if (input.kind === "timeout" && now >= saga.deadlineAt!) return compensate("stock-timeout", true, true, "stock-timeout");
      return undefined;
    case "COMPENSATING":
    case "STUCK":
      if (input.kind === "refunded" && saga.refundPending) return acknowledged({ refundPending: false, releasePending: saga.releasePending }, "refunded");
      if (input.kind === "released" && saga.releasePending) return acknowledged({ refundPending: saga.refundPending, releasePending: false }, "released");
      if (saga.state === "STUCK") {
        if (input.kind !== "resume") return undefined;
        return to({ state: "COMPENSATING", attempts: 1, deadlineAt: now + t.compensationRetryMs }, pendingRequests(saga, 1), "resumed");
      }
      if (input.kind === "timeout" && now >= saga.deadlineAt!) {
        if (saga.attempts >= t.compensationMaxAttempts) return to({ state: "STUCK", deadlineAt: undefined }, [], "compensation-failed");
        const attempt = saga.attempts + 1;
        return to({ attempts: attempt, deadlineAt: now + t.compensationRetryMs * 2 ** (attempt - 1) }, pendingRequests(saga, attempt), "compensation-retried");
      }
      return undefined;
    case "CONFIRMED":
    case "CANCELLED":
      return undefined;
  }
}

function pendingRequests(saga: Saga, attempt: number): SagaCommand[] {
  return [...(saga.refundPending ? [{ kind: "refund", attempt } as const] : []), ...(saga.releasePending ? [{ kind: "release", attempt } as const] : [])];
}
