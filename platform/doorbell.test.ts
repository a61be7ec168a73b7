import { describe, expect, it } from "vitest";
import { backoffMs, Doorbell } from "./doorbell.ts";

describe("Doorbell", () => {
  it("a ring ends the sleep in progress and is remembered until the loop clears it", { timeout: 5_000 }, async () => {
    const bell = new Doorbell();
    expect(bell.rung).toBe(false);
    let woke = false;
    const sleeping = bell.sleep(60_000).then(() => (woke = true));
    await Promise.resolve();
    expect(woke).toBe(false);
    bell.ring();
    await sleeping; // well before the 60 s (the test's timeout is 5 s)
    expect(bell.rung).toBe(true);

    // A ring with nobody asleep cuts no later sleep short (the loop checks `rung` instead).
    bell.rung = false;
    bell.ring();
    expect(bell.rung).toBe(true);
    let second = false;
    const next = bell.sleep(60_000).then(() => (second = true));
    await Promise.resolve();
    expect(second).toBe(false);
    bell.ring();
    await next;
  });

  it("backs off from 100 ms, doubling, to at most 5 s", () => {
    expect([1, 2, 3, 6, 7, 8, 50].map(backoffMs)).toEqual([100, 200, 400, 3200, 5000, 5000, 5000]);
  });
});
