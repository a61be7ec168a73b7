import { describe, expect, it } from "vitest";
import { describeReason, formatCents, InvalidEventError, orderCancelled, orderConfirmed } from "./notification.ts";

describe("notification", () => {
  it("formats cents as a decimal amount", () => {
    expect([1250, 5, 0, 100, 123456789, -1999].map(formatCents)).toEqual(["12.50", "0.05", "0.00", "1.00", "1234567.89", "-19.99"]);
  });

  it("describes known reasons for a customer, unknown ones by their words, none as such", () => {
    expect(describeReason("out-of-stock")).toBe("an item is out of stock");
    expect(describeReason("insufficient-credit")).toBe("your credit limit does not cover it");
    expect(describeReason("fraud-suspected")).toBe("fraud suspected");
    expect(describeReason("")).toBe("no reason given");
  });

  it("builds one message per outcome", () => {
    expect(orderConfirmed({ orderId: "o1", customerId: "c1", totalCents: 1250, at: 7 })).toEqual({
      orderId: "o1",
      customerId: "c1",
      kind: "order-confirmed",
      message: "Your order o1 is confirmed: 12.50",
      createdAt: 7,
    });
    expect(orderCancelled({ orderId: "o1", customerId: "c1", reason: "payment-timeout", at: 8 })).toMatchObject({
      kind: "order-cancelled",
      message: "Your order o1 was cancelled: the payment did not complete in time",
    });
  });

  it("rejects an outcome without an order or customer id", () => {
    expect(() => orderConfirmed({ orderId: "", customerId: "c1", totalCents: 1, at: 0 })).toThrow(InvalidEventError);
    expect(() => orderCancelled({ orderId: "o1", customerId: "", reason: "", at: 0 })).toThrow(/without a customer id/);
  });
});
