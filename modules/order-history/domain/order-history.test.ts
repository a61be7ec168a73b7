import { describe, expect, it } from "vitest";
import { assembleHistory, checkOutcome, checkPlacedOrder, contradictingOutcome, InvalidEventError, type PlacedOrder } from "./order-history.ts";

const order = (id: string, createdAt: number) => ({ id, customerId: "c1", customerName: "Ana", status: "PENDING" as const, totalCents: 100, createdAt });
const line = (orderId: string, lineNo: number, productId: string) => ({ orderId, lineNo, productId, productName: `name-${productId}`, quantity: 1, unitPriceCents: 10 });

describe("assembleHistory", () => {
  it("keeps the orders' order and puts each order's lines under it by line number", () => {
    const got = assembleHistory([order("o2", 2), order("o1", 1)], [line("o1", 1, "b"), line("o2", 0, "c"), line("o1", 0, "a")]);
    expect(got.map((o) => o.id)).toEqual(["o2", "o1"]);
    expect(got[1]!.lines.map((l) => l.productId)).toEqual(["a", "b"]);
    expect(got[0]!.lines).toEqual([{ productId: "c", productName: "name-c", quantity: 1, unitPriceCents: 10 }]);
  });

  it("gives an order without line rows an empty list and drops lines of orders not asked for", () => {
    const got = assembleHistory([order("o1", 1)], [line("other", 0, "x")]);
    expect(got).toEqual([{ ...order("o1", 1), lines: [] }]);
  });
});

describe("checkPlacedOrder", () => {
  const ok: PlacedOrder = { id: "o1", customerId: "c1", totalCents: 10, createdAt: 1, lines: [{ productId: "p1", quantity: 1, unitPriceCents: 10 }] };

  it("passes a well-formed order through", () => {
    expect(checkPlacedOrder(ok)).toBe(ok);
  });

  it.each([
    [{ ...ok, id: "" }, /without an order id/],
    [{ ...ok, customerId: "" }, /without a customer id/],
    [{ ...ok, lines: [...ok.lines, { productId: "", quantity: 1, unitPriceCents: 1 }] }, /line 1 has no product id/],
  ])("rejects an order it cannot key (%#)", (bad, message) => {
    expect(() => checkPlacedOrder(bad)).toThrow(InvalidEventError);
    expect(() => checkPlacedOrder(bad)).toThrow(message);
  });
});

describe("checkOutcome", () => {
  it("passes an outcome with an order id and rejects one without", () => {
    const ok = { orderId: "o1", status: "CONFIRMED" as const, at: 1 };
    expect(checkOutcome(ok)).toBe(ok);
    expect(() => checkOutcome({ ...ok, orderId: "" })).toThrow(InvalidEventError);
    expect(() => checkOutcome({ ...ok, orderId: "" })).toThrow(/CONFIRMED outcome without an order id/);
  });

  it("names the order and the rejected status of a contradicting outcome", () => {
    const err = contradictingOutcome({ orderId: "o1", status: "CANCELLED", at: 1 });
    expect(err).toBeInstanceOf(InvalidEventError);
    expect(err.message).toMatch(/order o1 .* CANCELLED/);
  });
});
