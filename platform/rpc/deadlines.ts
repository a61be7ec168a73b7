/** Something with a deadline that can be expired. */
export interface Expirable {
  readonly deadlineAt: number;
  expire(): void;
}

/**
 * One coarse timer for many deadlines: a call registers when it starts waiting and leaves when it
 * settles (a Set add/delete), instead of arming and clearing a timer per call. Deadlines fire
 * within `tickMs` of being due. The timer runs only while something is pending, and never keeps
 * the process alive.
 */
export class DeadlineWheel {
  readonly #pending = new Set<Expirable>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly tickMs = 5) {}

  add(item: Expirable): void {
    this.#pending.add(item);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#tick(), this.tickMs);
      this.#timer.unref?.();
    }
  }

  delete(item: Expirable): void {
    this.#pending.delete(item);
  }

  #tick(): void {
    // The timer stops on a tick that finds nothing pending, not on every delete: a steady stream
    // of short calls would otherwise arm and clear an interval per call.
    if (this.#pending.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const now = Date.now();
    for (const item of this.#pending) {
      if (item.deadlineAt <= now) {
        this.delete(item);
        item.expire();
      }
    }
  }
}
