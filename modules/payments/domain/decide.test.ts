import { describe, expect, it } from "vitest";
import { unregisteredAccount, type Account } from "./account.ts";
import { decideCharge, decideRefund, decideRegistration } from "./decide.ts";
import { checkCharge, InvalidEventError, type Payment } from "./payment.ts";

const NOW = 1_700_000_000_000;
const open = (availableCents: number, creditLimitCents = 10_000, version = 3): Account => ({ customerId: "c1", creditLimitCents, availableCents, registeredAt: 1, version, updatedAt: 1 });
const payment = (status: Payment["status"], amountCents = 700, orderId = "o1", createdAt = 5): Payment => ({ orderId, customerId: "c1", amountCents, status, reason: "", createdAt, updatedAt: createdAt });
const order = (totalCents: number, orderId = "o1") => ({ orderId, customerId: "c1", totalCents });

describe("decideCharge", () => {
  it("captures within the available credit: the account goes down over the version it was read at", () => {
    const d = decideCharge(order(700), open(1000), undefined, NOW);
    expect(d.account).toEqual({ next: { ...open(300), version: 4, updatedAt: NOW }, expectedVersion: 3 });
    expect(d.payments).toEqual([{ next: { ...payment("CAPTURED"), createdAt: NOW, updatedAt: NOW }, expectedStatus: null }]);
    expect(d.outcomes).toEqual([{ type: "processed", orderId: "o1", customerId: "c1", amountCents: 700 }]);
  });

  it("captures a total equal to the available credit", () => {
    expect(decideCharge(order(1000), open(1000), undefined, NOW).account?.next.availableCents).toBe(0);
  });

  it("refuses a total above the available credit, writing no account", () => {
    const d = decideCharge(order(1001), open(1000), undefined, NOW);
    expect(d.account).toBeUndefined();
    expect(d.payments.map((p) => [p.next.status, p.next.reason, p.next.amountCents])).toEqual([["FAILED", "insufficient-credit", 1001]]);
    expect(d.outcomes).toEqual([{ type: "failed", orderId: "o1", customerId: "c1", reason: "insufficient-credit" }]);
  });

  it.each(["PENDING", "CAPTURED", "FAILED", "REFUNDED", "VOIDED"] as const)("does nothing when the order's payment is already %s", (status) => {
    expect(decideCharge(order(700), open(1000), payment(status), NOW)).toEqual({ payments: [], outcomes: [] });
  });

  it("parks the charge on a new unregistered account when the customer is unknown", () => {
    const d = decideCharge(order(700), undefined, undefined, NOW);
    expect(d.account).toEqual({ next: unregisteredAccount("c1", NOW), expectedVersion: null });
    expect(d.payments.map((p) => [p.next.status, p.expectedStatus])).toEqual([["PENDING", null]]);
    expect(d.outcomes).toEqual([]);
  });

  it("parks a second charge by moving the unregistered account's version", () => {
    const stub = unregisteredAccount("c1", 1);
    const d = decideCharge(order(700, "o2"), stub, undefined, NOW);
    expect(d.account).toEqual({ next: { ...stub, version: 2, updatedAt: NOW }, expectedVersion: 1 });
  });
});

describe("decideRegistration", () => {
  it("opens a new account with all of its limit available", () => {
    const d = decideRegistration({ customerId: "c1", creditLimitCents: 5000 }, undefined, [], NOW);
    expect(d).toEqual({ account: { next: { customerId: "c1", creditLimitCents: 5000, availableCents: 5000, registeredAt: NOW, version: 1, updatedAt: NOW }, expectedVersion: null }, payments: [], outcomes: [] });
  });

  it("leaves an open account as it is: the first registration wins", () => {
    expect(decideRegistration({ customerId: "c1", creditLimitCents: 99 }, open(10), [], NOW)).toEqual({ payments: [], outcomes: [] });
  });

  it("charges the parked orders oldest first, refusing those the credit no longer covers", () => {
    const stub = { ...unregisteredAccount("c1", 1), version: 4 };
    const parked = [payment("PENDING", 400, "late", 30), payment("PENDING", 700, "first", 10), payment("PENDING", 300, "second", 20)];
    const d = decideRegistration({ customerId: "c1", creditLimitCents: 1000 }, stub, parked, NOW);
    expect(d.account).toEqual({ next: { customerId: "c1", creditLimitCents: 1000, availableCents: 0, registeredAt: NOW, version: 5, updatedAt: NOW }, expectedVersion: 4 });
    expect(d.payments.map((p) => [p.next.orderId, p.next.status, p.expectedStatus])).toEqual([
      ["first", "CAPTURED", "PENDING"],
      ["second", "CAPTURED", "PENDING"],
      ["late", "FAILED", "PENDING"],
    ]);
    expect(d.outcomes.map((o) => [o.orderId, o.type])).toEqual([["first", "processed"], ["second", "processed"], ["late", "failed"]]);
  });
});

describe("decideRefund", () => {
  const req = { orderId: "o1", customerId: "c1" };

  it("gives a capture back once: the payment leaves CAPTURED, the credit returns", () => {
    const d = decideRefund(req, payment("CAPTURED", 700), open(300), NOW);
    expect(d.account).toEqual({ next: { ...open(1000), version: 4, updatedAt: NOW }, expectedVersion: 3 });
    expect(d.payments.map((p) => [p.next.status, p.expectedStatus])).toEqual([["REFUNDED", "CAPTURED"]]);
    expect(d.outcomes).toEqual([{ type: "refunded", orderId: "o1", customerId: "c1", amountCents: 700 }]);
  });

  it("voids an order not charged yet and answers 0", () => {
    const d = decideRefund(req, undefined, undefined, NOW);
    expect(d.account).toBeUndefined();
    expect(d.payments).toEqual([{ next: { orderId: "o1", customerId: "c1", amountCents: 0, status: "VOIDED", reason: "", createdAt: NOW, updatedAt: NOW }, expectedStatus: null }]);
    expect(d.outcomes).toEqual([{ type: "refunded", orderId: "o1", customerId: "c1", amountCents: 0 }]);
  });

  it("voids a parked charge", () => {
    const d = decideRefund(req, payment("PENDING", 700), undefined, NOW);
    expect(d.payments.map((p) => [p.next.status, p.expectedStatus])).toEqual([["VOIDED", "PENDING"]]);
    expect(d.outcomes.map((o) => o.type === "refunded" && o.amountCents)).toEqual([0]);
  });

  it.each([
    ["REFUNDED", 700],
    ["VOIDED", 0],
    ["FAILED", 0],
  ] as const)("answers a request for a %s payment again without writing", (status, amount) => {
    expect(decideRefund(req, payment(status, 700), open(1000), NOW)).toEqual({ payments: [], outcomes: [{ type: "refunded", orderId: "o1", customerId: "c1", amountCents: amount }] });
  });
});

describe("checkCharge", () => {
  it.each([
    [{ orderId: "", customerId: "c", totalCents: 1 }, /without an order id/],
    [{ orderId: "o", customerId: "", totalCents: 1 }, /without a customer id/],
    [{ orderId: "o", customerId: "c", totalCents: -1 }, /not a non-negative number of cents/],
    [{ orderId: "o", customerId: "c", totalCents: 2 ** 53 }, /not a non-negative number of cents/],
  ])("rejects a charge it cannot book (%#)", (bad, message) => {
    expect(() => checkCharge(bad)).toThrow(InvalidEventError);
    expect(() => checkCharge(bad)).toThrow(message);
  });
});
