import { describe, expect, it } from "vitest";
import { decideRelease, decideReservation, mergeLines, type Reservation } from "./reservation.ts";
import { decideRestock, evolve, NO_STOCK, StockLimitExceeded, type Stock, type StockEvent } from "./stock.ts";

const fold = (events: StockEvent[]) => events.reduce(evolve, NO_STOCK);

describe("stock", () => {
  it("folds restocks, reservations and releases, keeping restocked = available + reserved", () => {
    const s = fold([
      { type: "restocked", quantity: 5 },
      { type: "reserved", orderId: "o1", quantity: 3 },
      { type: "restocked", quantity: 2 },
      { type: "released", orderId: "o1", quantity: 1 },
    ]);
    expect(s).toEqual({ available: 5, reserved: 2, restocked: 7 });
    expect(NO_STOCK).toEqual({ available: 0, reserved: 0, restocked: 0 });
  });

  it("refuses a restock past the largest exact count", () => {
    const near: Stock = { available: Number.MAX_SAFE_INTEGER - 1, reserved: 0, restocked: Number.MAX_SAFE_INTEGER - 1 };
    expect(decideRestock(near, 1)).toEqual({ type: "restocked", quantity: 1 });
    expect(() => decideRestock(near, 2)).toThrow(StockLimitExceeded);
  });
});

describe("reservation", () => {
  const stocks: Record<string, Stock> = {
    a: { available: 3, reserved: 0, restocked: 3 },
    b: { available: 1, reserved: 4, restocked: 5 },
  };
  const stockOf = (id: string) => stocks[id] ?? NO_STOCK;

  it("merges lines of the same product and sorts them by product", () => {
    expect(mergeLines([{ productId: "b", quantity: 1 }, { productId: "a", quantity: 2 }, { productId: "b", quantity: 3 }])).toEqual([
      { productId: "a", quantity: 2 },
      { productId: "b", quantity: 4 },
    ]);
  });

  it("reserves all lines when every product has enough, else none, naming the short lines", () => {
    const fits = mergeLines([{ productId: "a", quantity: 3 }, { productId: "b", quantity: 1 }]);
    expect(decideReservation(undefined, fits, stockOf)).toEqual({ kind: "reserve", lines: fits });
    const short = mergeLines([{ productId: "a", quantity: 1 }, { productId: "b", quantity: 1 }, { productId: "b", quantity: 1 }, { productId: "c", quantity: 1 }]);
    expect(decideReservation(undefined, short, stockOf)).toEqual({ kind: "refuse", short: [{ productId: "b", quantity: 2 }, { productId: "c", quantity: 1 }] });
  });

  it("answers a known order as before, whatever the stock is now", () => {
    const lines = [{ productId: "a", quantity: 1 }];
    const known = (status: Reservation["status"]): Reservation => ({ orderId: "o", status, lines: [] });
    expect(decideReservation(known("RESERVED"), lines, stockOf)).toEqual({ kind: "repeat", outcome: { reserved: true } });
    expect(decideReservation(known("FAILED"), lines, stockOf)).toEqual({ kind: "repeat", outcome: { reserved: false, reason: "out-of-stock" } });
    expect(decideReservation(known("RELEASED"), lines, stockOf)).toEqual({ kind: "repeat", outcome: { reserved: false, reason: "released" } });
  });

  it("releases a reservation once; an unknown order gets a tombstone; anything else is only acknowledged", () => {
    const lines = [{ productId: "a", quantity: 2 }];
    expect(decideRelease({ orderId: "o", status: "RESERVED", lines })).toEqual({ kind: "release", lines });
    expect(decideRelease(undefined)).toEqual({ kind: "tombstone" });
    expect(decideRelease({ orderId: "o", status: "RELEASED", lines: [] })).toEqual({ kind: "acknowledge" });
    expect(decideRelease({ orderId: "o", status: "FAILED", lines: [] })).toEqual({ kind: "acknowledge" });
  });
});
