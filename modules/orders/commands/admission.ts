import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { sagaStore } from "../db/saga-store.ts";

/**
 * Admission control for PlaceOrder: how many sagas are not done yet, and a refusal once that
 * passes `limit`. Accepting orders faster than the saga can finish them only grows the backlog
 * until sagas wait past their step timeouts and are cancelled — orders the customer was told were
 * accepted. Refusing (429, `orders-overloaded`, `Retry-After`) keeps every accepted order within
 * reach of its deadlines, and tells clients to come back.
 *
 * The count is the orders database's (every instance's sagas), read every `refreshMs`, plus what
 * this instance placed since: cheap per order, and at most one refresh behind other instances.
 */
export class SagaBacklog {
  #known = 0;
  #placedSince = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(
    private readonly storage: ModuleStorage,
    /** Sagas not done above which orders are refused (`modules.orders.saga.maxInFlight`; 0: no limit). */
    readonly limit: number,
    private readonly refreshMs = 1_000,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** Keeps the count fresh; resolves after the first read (a failed read is reported, and retried). */
  async start(): Promise<void> {
    if (this.limit === 0) return;
    this.#timer = setInterval(() => void this.refresh().catch(this.onError), this.refreshMs);
    this.#timer.unref?.();
    await this.refresh().catch(this.onError);
  }

  stop(): Promise<void> | undefined {
    clearInterval(this.#timer);
    return this.#refreshing;
  }

  /** Sagas not done yet, as far as this instance knows. */
  get inFlight(): number {
    return this.#known + this.#placedSince;
  }

  /** Throws ResourceExhausted (`orders-overloaded`) while the backlog is at its limit. */
  admit(): void {
    if (this.limit === 0 || this.inFlight < this.limit) return;
    throw domainError(
      Code.ResourceExhausted,
      "orders-overloaded",
      `${this.inFlight} orders are still in their saga (modules.orders.saga.maxInFlight = ${this.limit}); retry in a few seconds`,
      "orders",
      { inFlight: String(this.inFlight), limit: String(this.limit), retryAfterSeconds: String(Math.max(1, Math.ceil(this.refreshMs / 1000))) },
    );
  }

  /** A saga was started (after its commit). */
  placed(): void {
    this.#placedSince++;
  }

  /** Reads the database's count; orders placed while it ran may be counted twice until the next one. */
  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      const before = this.#placedSince;
      try {
        let n = 0;
        for (const c of (await sagaStore.countActive(this.storage)).values()) n += c;
        this.#known = n;
        this.#placedSince -= before;
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }
}
