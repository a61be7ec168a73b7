import { describe, expect, it } from "vitest";
import { capturedProduct, daysBetween, InvalidEventError, isDay, recordFact, salesOf, utcDay } from "./sales.ts";

describe("analytics domain", () => {
  const at = Date.UTC(2025, 2, 4, 23, 59, 59, 999);

  it("counts an order when its second fact arrives, whichever it is, on the confirmation's UTC day", () => {
    const created = recordFact(undefined, "o1", { kind: "created", at: at - 60_000 })!;
    expect(created).toEqual({ next: { orderId: "o1", createdAt: at - 60_000, confirmedAt: null, confirmedDay: null, counted: false, version: 1 }, isNew: true });
    const confirmed = recordFact(created.next, "o1", { kind: "confirmed", at })!;
    expect(confirmed).toMatchObject({ next: { confirmedDay: "2025-03-04", counted: true, version: 2 }, isNew: false, countOn: "2025-03-04" });

    const early = recordFact(undefined, "o2", { kind: "confirmed", at: at + 1 })!;
    expect(early.countOn).toBeUndefined();
    expect(recordFact(early.next, "o2", { kind: "created", at })).toMatchObject({ next: { counted: true }, countOn: "2025-03-05" });
  });

  it("ignores a fact it already has: no second count", () => {
    const both = recordFact(recordFact(undefined, "o", { kind: "created", at })!.next, "o", { kind: "confirmed", at })!.next;
    expect(recordFact(both, "o", { kind: "created", at })).toBeUndefined();
    expect(recordFact(both, "o", { kind: "confirmed", at: at + 5 })).toBeUndefined();
  });

  it("sums an order's lines per product", () => {
    expect(salesOf([{ productId: "a", quantity: 2, unitPriceCents: 250 }, { productId: "b", quantity: 1, unitPriceCents: 100 }, { productId: "a", quantity: 1, unitPriceCents: 300 }])).toEqual([
      { productId: "a", units: 3, revenueCents: 800 },
      { productId: "b", units: 1, revenueCents: 100 },
    ]);
  });

  it("reads a captured catalog row, rejecting one it cannot use", () => {
    expect(capturedProduct({ id: "p", sku: "S", name: "Kopi", price_cents: 2500, version: 3, created_at: 1 })).toEqual({ id: "p", name: "Kopi", priceCents: 2500, version: 3 });
    expect(capturedProduct({ id: "p", name: "Kopi", price_cents: "2500", version: "3" })).toMatchObject({ priceCents: 2500, version: 3 });
    expect(() => capturedProduct(undefined)).toThrow(InvalidEventError);
    expect(() => capturedProduct({ id: "p", name: "Kopi", price_cents: 1.5, version: 1 })).toThrow(/price_cents/);
  });

  it("knows UTC days", () => {
    expect(utcDay(at)).toBe("2025-03-04");
    expect(utcDay(at + 1)).toBe("2025-03-05");
    expect(["2024-02-29", "2025-12-31"].every(isDay)).toBe(true);
    expect(["2025-02-29", "2025-13-01", "2025-1-01", "20250101", "", "0000-01-01"].some(isDay)).toBe(false);
    expect(daysBetween("2024-12-31", "2025-03-01")).toBe(60);
  });
});
