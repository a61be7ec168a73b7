import { describe, expect, it } from "vitest";
import { outcomeOf, sagaFigures, type SagaOutcome } from "./saga.ts";

const T0 = Date.parse("2026-11-26T10:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

describe("bench saga figures", () => {
  it("reads the CONFIRMED time from the saga history of GET /api/v1/orders/{id}", () => {
    const o = outcomeOf({
      status: "CONFIRMED",
      createdAt: iso(T0),
      saga: { history: [{ at: iso(T0), state: "AWAITING_PAYMENT" }, { at: iso(T0 + 3), state: "AWAITING_STOCK" }, { at: iso(T0 + 7), state: "CONFIRMED" }] },
    });
    expect(o).toEqual({ status: "CONFIRMED", createdAt: T0, confirmedAt: T0 + 7 });
    expect(outcomeOf({ status: "PENDING", createdAt: iso(T0), saga: { history: [{ at: iso(T0), state: "AWAITING_PAYMENT" }] } }).confirmedAt).toBeUndefined();
  });

  it("measures placed → CONFIRMED per order, and confirmed/s up to the last confirmation", () => {
    // 100 orders placed 10 ms apart from T0; order i confirmed i % 10 + 1 ms after it was placed.
    const n = 100;
    const placed = { ids: [] as string[], sentAt: [] as number[], repliedAt: [] as number[] };
    const outcomes: SagaOutcome[] = [];
    for (let i = 0; i < n; i++) {
      const created = T0 + 10 * i;
      placed.ids.push(`o${i}`);
      placed.sentAt.push(created - 2);
      placed.repliedAt.push(created + 1);
      outcomes.push({ status: "CONFIRMED", createdAt: created, confirmedAt: created + (i % 10) + 1 });
    }
    const f = sagaFigures(placed, outcomes, T0);
    expect(f.complete).toBe(true);
    expect(f.confirmed).toBe(100);
    expect(f.placedToConfirmed).toEqual({ p50Ms: 5, p99Ms: 10, maxMs: 10 });
    expect(f.sendToConfirmed.p99Ms).toBe(12);
    // The last order: placed at T0 + 990, confirmed 10 ms later.
    expect(f.lastConfirmedAfterSec).toBe(1);
    expect(f.confirmedPerSec).toBe(100);
  });

  it("does not pass off the confirmed orders' latency as everyone's when some are not CONFIRMED", () => {
    const placed = { ids: ["a", "b", "c"], sentAt: [T0, T0, T0], repliedAt: [T0 + 1, T0 + 1, T0 + 1] };
    const outcomes: SagaOutcome[] = [
      { status: "CONFIRMED", createdAt: T0, confirmedAt: T0 + 4 },
      { status: "PENDING", createdAt: T0 },
      { status: "CANCELLED", createdAt: T0 },
    ];
    const f = sagaFigures(placed, outcomes, T0);
    expect(f.complete).toBe(false);
    expect(f.byStatus).toEqual({ CONFIRMED: 1, PENDING: 1, CANCELLED: 1 });
    expect(f.confirmed).toBe(1);
  });
});
