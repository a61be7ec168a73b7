import type { DescMessage, DescMethod, DescMethodUnary } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ContextValues, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import {
  BrokenCircuitError,
  circuitBreaker,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleWhen,
  retry,
  type CircuitBreakerPolicy,
  type IBackoff,
  type IBackoffFactory,
} from "cockatiel";

type HeadersArg = ConstructorParameters<typeof Headers>[0];

/** Retry settings of remote calls (`rpc.retry`). */
export interface RetryOptions {
  /** Attempts in all, the first included; 1 never retries. */
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

/** Circuit-breaker settings (`rpc.breaker`). */
export interface BreakerOptions {
  /** Consecutive failed attempts that open the circuit. */
  readonly threshold: number;
  /** How long an open circuit fails calls at once before a trial call may pass. */
  readonly halfOpenAfterMs: number;
}

export interface RemoteTransportOptions {
  /** Base URL of the process serving the services, e.g. `http://orders:3000`. */
  readonly baseUrl: string;
  /** Name of that process, for errors, logs and metrics. */
  readonly process: string;
  /** Deadline of calls whose caller sets none; retries share it. */
  readonly defaultTimeoutMs: number;
  readonly retry: RetryOptions;
  readonly breaker: BreakerOptions;
  /** The `traceparent` to send with a call (the current trace's child span), if any. */
  readonly traceparent?: () => string | undefined;
  /** Called when a call settles (after its retries): for metrics. */
  readonly onCall?: (method: DescMethod, code: Code | undefined, seconds: number) => void;
  /** Called when an attempt failed and another one follows. */
  readonly onRetry?: (method: DescMethod, err: ConnectError, attempt: number, delayMs: number) => void;
  /** Called when the circuit changes state. */
  readonly onCircuit?: (state: "closed" | "open" | "half-open" | "isolated", lastError: unknown) => void;
  /** The fetch to use (default: the global one). */
  readonly fetch?: typeof globalThis.fetch;
}

/** A transport to one remote process, with its circuit breaker. */
export interface RemoteTransport extends Transport {
  /** The breaker's state: 0 closed, 1 open, 2 half-open, 3 isolated (cockatiel's `CircuitState`). */
  circuitState(): CircuitState;
}

// Failures where the request provably never left this process: nothing can have happened on the
// other side, so any method may be tried again.
const NOT_SENT_CODES = new Set(["ECONNREFUSED", "ConnectionRefused", "ENOTFOUND", "EAI_AGAIN", "FailedToOpenSocket"]);
const notSent = new WeakSet<ConnectError>();

/**
 * A method that may safely run twice: declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` in its proto
 * (`option idempotency_level`). A contract test makes every `Get…`/`List…` query declare it.
 */
export function isSafeToRepeat(method: DescMethod): boolean {
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS || method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT;
}

/**
 * Whether a failed attempt may be retried: the request never reached the server (any method), or
 * the callee answered `Unavailable` or the connection broke mid-call and the method is safe to
 * repeat. Never `DeadlineExceeded` (the call's time is spent), an open circuit, nor an answer of
 * the callee's own.
 */
export function isRetryable(err: unknown, method: DescMethod): boolean {
  if (!(err instanceof ConnectError) || err.cause instanceof BrokenCircuitError) return false;
  if (notSent.has(err)) return true;
  return err.code === Code.Unavailable && isSafeToRepeat(method);
}

/** Failures that speak of the remote process's health (not of the request): they count for the breaker. */
export function isProcessFailure(err: unknown): boolean {
  return err instanceof ConnectError && (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded);
}

/** A fetch that failed below HTTP (refused, reset, DNS) becomes `Unavailable`; answers pass unchanged. */
function normalize(err: unknown, process: string): ConnectError {
  const e = ConnectError.from(err);
  const cause = e.cause;
  if (e.code !== Code.Unknown || !(cause instanceof Error) || cause instanceof ConnectError) return e;
  const code = (cause as { code?: unknown }).code ?? (cause.cause as { code?: unknown } | undefined)?.code;
  const out = new ConnectError(`process ${process} is unreachable: ${cause.message}`, Code.Unavailable, undefined, undefined, cause);
  if (typeof code === "string" && NOT_SENT_CODES.has(code)) notSent.add(out);
  return out;
}

/** Exponential backoff with jitter, never waiting past the call's deadline. */
class DeadlineBackoff implements IBackoffFactory<unknown> {
  constructor(
    private readonly inner: IBackoffFactory<unknown>,
    private readonly deadlineAt: number,
  ) {}
  next(context: unknown): IBackoff<unknown> {
    const b = this.inner.next(context);
    return { duration: Math.max(0, Math.min(b.duration, this.deadlineAt - Date.now())), next: (c) => new DeadlineBackoff(b, this.deadlineAt).next(c) };
  }
}

const STATES = { [CircuitState.Closed]: "closed", [CircuitState.Open]: "open", [CircuitState.HalfOpen]: "half-open", [CircuitState.Isolated]: "isolated" } as const;

/**
 * A Connect transport to the services of another process: the Connect protocol in binary over
 * HTTP (fetch), with the same contract as the in-process transport, plus what a network needs:
 * - one deadline per call (`timeoutMs`, or the default) shared by its attempts, sent to the
 *   server (`connect-timeout-ms`) and enforced here (`DeadlineExceeded`);
 * - retries with exponential backoff and jitter, only where safe (`isRetryable`);
 * - a circuit breaker per remote process: after `breaker.threshold` consecutive failed attempts
 *   (`isProcessFailure`) calls fail at once with `Unavailable` until a trial call succeeds;
 * - the current trace continues on the other side (`traceparent`).
 *
 * @example
 * const t = createRemoteTransport({ baseUrl: "http://catalog:3000", process: "core", defaultTimeoutMs: 5000, retry, breaker });
 * const catalog = createClient(CatalogService, t);
 */
export function createRemoteTransport(opts: RemoteTransportOptions): RemoteTransport {
  const http = createConnectTransport({ baseUrl: opts.baseUrl, useBinaryFormat: true, fetch: opts.fetch });
  const breaker: CircuitBreakerPolicy = circuitBreaker(handleWhen(isProcessFailure), {
    halfOpenAfter: opts.breaker.halfOpenAfterMs,
    breaker: new ConsecutiveBreaker(opts.breaker.threshold),
  });
  breaker.onStateChange((s) => opts.onCircuit?.(STATES[s], breaker.lastFailure && "error" in breaker.lastFailure ? breaker.lastFailure.error : undefined));
  const backoff = new ExponentialBackoff({ initialDelay: opts.retry.initialDelayMs, maxDelay: opts.retry.maxDelayMs });

  async function call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersArg | undefined,
    input: unknown,
    contextValues: ContextValues | undefined,
  ): Promise<UnaryResponse<I, O>> {
    const deadlineAt = Date.now() + (timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : opts.defaultTimeoutMs);
    const headers = new Headers(header);
    const traceparent = opts.traceparent?.();
    if (traceparent) headers.set("traceparent", traceparent);
    const policy = retry(
      handleWhen((err) => isRetryable(err, method) && Date.now() < deadlineAt),
      { maxAttempts: opts.retry.maxAttempts - 1, backoff: new DeadlineBackoff(backoff, deadlineAt) },
    );
    if (opts.onRetry) policy.onRetry((r) => "error" in r && opts.onRetry!(method, r.error as ConnectError, r.attempt, r.delay));
    const attempt = async (attemptSignal: AbortSignal): Promise<UnaryResponse<I, O>> => {
      const remaining = deadlineAt - Date.now();
      if (remaining <= 0) throw new ConnectError(`the call to process ${opts.process} timed out`, Code.DeadlineExceeded);
      // Normalised inside the breaker, so that it sees an unreachable process as `Unavailable`.
      const send = () => http.unary(method, attemptSignal, remaining, headers, input as never, contextValues).catch((err: unknown) => Promise.reject(normalize(err, opts.process)));
      try {
        return await breaker.execute(send, attemptSignal);
      } catch (err) {
        if (err instanceof BrokenCircuitError) throw new ConnectError(`process ${opts.process} is unavailable (circuit open after repeated failures)`, Code.Unavailable, undefined, undefined, err);
        throw err;
      }
    };
    return policy.execute(({ signal: s }) => attempt(s), signal);
  }

  return {
    circuitState: () => breaker.state,
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersArg | undefined,
      input: unknown,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const started = performance.now();
      try {
        const res = await call(method, signal, timeoutMs, header, input, contextValues);
        opts.onCall?.(method, undefined, (performance.now() - started) / 1000);
        return res;
      } catch (err) {
        const e = ConnectError.from(err);
        opts.onCall?.(method, e.code, (performance.now() - started) / 1000);
        throw e;
      }
    },
    stream() {
      return Promise.reject(new ConnectError("streaming RPCs between processes are not supported yet", Code.Unimplemented));
    },
  };
}
