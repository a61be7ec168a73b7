import { describe, expect, it } from "vitest";
import { duplicateLines, newOrder, orderTotal, priceLines, requestFingerprint } from "./order.ts";

const prices = new Map([
  ["kopi", 2500],
  ["teh", 1200],
  ["free", 0],
]);

describe("priceLines", () => {
  it("prices each line at unit price × quantity and sums the total, keeping request order", () => {
    const r = priceLines([{ productId: "teh", quantity: 3 }, { productId: "kopi", quantity: 2 }, { productId: "free", quantity: 7 }], prices);
    expect(r).toEqual({
      kind: "priced",
      totalCents: 3600 + 5000,
      lines: [
        { productId: "teh", quantity: 3, unitPriceCents: 1200, lineTotalCents: 3600 },
        { productId: "kopi", quantity: 2, unitPriceCents: 2500, lineTotalCents: 5000 },
        { productId: "free", quantity: 7, unitPriceCents: 0, lineTotalCents: 0 },
      ],
    });
  });

  it("names every line whose product has no price", () => {
    expect(priceLines([{ productId: "x", quantity: 1 }, { productId: "kopi", quantity: 1 }, { productId: "y", quantity: 1 }], prices)).toEqual({ kind: "unknown-products", lineIndexes: [0, 2] });
  });

  it("refuses a total that a number cannot hold exactly", () => {
    const big = new Map([["gold", 1_000_000_000_000]]);
    expect(priceLines([{ productId: "gold", quantity: 9000 }], big).kind).toBe("priced");
    expect(priceLines([{ productId: "gold", quantity: 10_000 }], big)).toEqual({ kind: "total-too-large" });
  });
});

describe("orders", () => {
  it("a new order is PENDING with no reason", () => {
    const lines = [{ productId: "kopi", quantity: 1, unitPriceCents: 2500, lineTotalCents: 2500 }];
    expect(newOrder({ id: "o1", customerId: "c1", lines, totalCents: 2500, now: 42 })).toEqual({ id: "o1", customerId: "c1", status: "PENDING", totalCents: 2500, lines, reason: "", createdAt: 42, updatedAt: 42 });
  });

  it("orderTotal of no lines is 0", () => expect(orderTotal([])).toBe(0));

  it("finds repeated products with the line they repeat", () => {
    expect(duplicateLines([{ productId: "a" }, { productId: "b" }, { productId: "a" }, { productId: "a" }])).toEqual([
      { index: 2, firstIndex: 0 },
      { index: 3, firstIndex: 0 },
    ]);
    expect(duplicateLines([{ productId: "a" }, { productId: "b" }])).toEqual([]);
  });
});

describe("requestFingerprint", () => {
  const req = { customerId: "c1", lines: [{ productId: "a", quantity: 1 }, { productId: "b", quantity: 2 }] };

  it("is the same for the same request, whatever the key order of the objects", () => {
    const reordered = { lines: [{ quantity: 1, productId: "a" }, { quantity: 2, productId: "b" }], customerId: "c1" };
    expect(requestFingerprint(reordered)).toBe(requestFingerprint(req));
  });

  it("differs when the customer, a quantity, a product or the line order differs", () => {
    const base = requestFingerprint(req);
    expect(requestFingerprint({ ...req, customerId: "c2" })).not.toBe(base);
    expect(requestFingerprint({ ...req, lines: [{ productId: "a", quantity: 1 }, { productId: "b", quantity: 3 }] })).not.toBe(base);
    expect(requestFingerprint({ ...req, lines: [{ productId: "a", quantity: 1 }, { productId: "c", quantity: 2 }] })).not.toBe(base);
    expect(requestFingerprint({ ...req, lines: [...req.lines].reverse() })).not.toBe(base);
  });

  it("cannot be fooled by separators inside ids", () => {
    const a = requestFingerprint({ customerId: "c", lines: [{ productId: "a\",1],[\"b", quantity: 2 }] });
    const b = requestFingerprint({ customerId: "c", lines: [{ productId: "a", quantity: 1 }, { productId: "b", quantity: 2 }] });
    expect(a).not.toBe(b);
  });
});
