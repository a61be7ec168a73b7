/**
 * A polling loop's doorbell: `ring()` says work arrived and cuts a `sleep` short. The loop clears
 * `rung` before each look for work and sleeps only while it is still clear, so a ring during the
 * look is not lost.
 * @example
 * bell.rung = false;
 * const rows = read();
 * if (rows.length === 0 && !bell.rung) await bell.sleep(1000);
 */
export class Doorbell {
  rung = false;
  #wakeup: (() => void) | undefined;

  ring(): void {
    this.rung = true;
    const w = this.#wakeup;
    this.#wakeup = undefined;
    w?.();
  }

  /** Resolves after `ms`, or at the next ring, whichever comes first. */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#wakeup = done;
    });
  }
}

/** A loop's pause after its `failures`-th failure in a row: 100 ms, doubling, at most 5 s. */
export function backoffMs(failures: number): number {
  return Math.min(5000, 50 * 2 ** Math.min(failures, 7));
}
