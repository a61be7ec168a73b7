import { describe, expect, it } from "vitest";
import { decide, startSaga, type Saga, type SagaInput, type SagaTimings } from "./saga.ts";

const t: SagaTimings = { paymentTimeoutMs: 1000, stockTimeoutMs: 2000, compensationRetryMs: 100, compensationMaxAttempts: 3 };
const T0 = 1_000_000;

/** Feeds inputs in order, at `T0 + at`; returns the final saga and every command sent. */
function run(steps: Array<[at: number, input: SagaInput]>, from: Saga = startSaga("o1", T0, t)) {
  let saga = from;
  const commands: string[] = [];
  const notes: string[] = [];
  for (const [at, input] of steps) {
    const tr = decide(saga, input, T0 + at, t);
    if (!tr) continue;
    expect(tr.next.version).toBe(saga.version + 1);
    saga = tr.next;
    notes.push(tr.note);
    commands.push(...tr.commands.map((c) => ("attempt" in c ? `${c.kind}#${c.attempt}` : c.kind === "cancelled" ? `cancelled:${c.reason}` : c.kind)));
  }
  return { saga, commands, notes };
}

describe("order saga", () => {
  it("happy path: paid, reserved, confirmed; deadlines per step", () => {
    const paid = decide(startSaga("o1", T0, t), { kind: "payment-processed" }, T0 + 10, t)!;
    expect(paid.next).toMatchObject({ state: "AWAITING_STOCK", deadlineAt: T0 + 10 + t.stockTimeoutMs });
    const r = run([[10, { kind: "payment-processed" }], [20, { kind: "stock-reserved" }]]);
    expect(r.saga).toMatchObject({ state: "CONFIRMED", deadlineAt: undefined, reason: "" });
    expect(r.commands).toEqual(["reserve-stock", "confirmed"]);
  });

  it("insufficient credit cancels at once: nothing to compensate", () => {
    const r = run([[10, { kind: "payment-failed", reason: "insufficient-credit" }]]);
    expect(r.saga).toMatchObject({ state: "CANCELLED", reason: "insufficient-credit" });
    expect(r.commands).toEqual(["cancelled:insufficient-credit"]);
  });

  it("out of stock refunds, then cancels when the refund is acknowledged", () => {
    const r = run([[10, { kind: "payment-processed" }], [20, { kind: "stock-failed", reason: "out-of-stock" }], [30, { kind: "refunded" }]]);
    expect(r.saga).toMatchObject({ state: "CANCELLED", reason: "out-of-stock", refundPending: false });
    expect(r.commands).toEqual(["reserve-stock", "refund#1", "cancelled:out-of-stock"]);
  });

  it("duplicates and late answers change nothing", () => {
    const r = run([
      [10, { kind: "payment-processed" }],
      [11, { kind: "payment-processed" }],
      [12, { kind: "payment-failed", reason: "insufficient-credit" }],
      [20, { kind: "stock-reserved" }],
      [21, { kind: "stock-reserved" }],
      [22, { kind: "stock-failed", reason: "out-of-stock" }],
      [23, { kind: "refunded" }],
      [5000, { kind: "timeout" }],
    ]);
    expect(r.saga.state).toBe("CONFIRMED");
    expect(r.commands).toEqual(["reserve-stock", "confirmed"]);
  });

  it("a timeout only counts once the deadline has passed", () => {
    expect(decide(startSaga("o1", T0, t), { kind: "timeout" }, T0 + t.paymentTimeoutMs - 1, t)).toBeUndefined();
    expect(decide(startSaga("o1", T0, t), { kind: "timeout" }, T0 + t.paymentTimeoutMs, t)?.next.state).toBe("COMPENSATING");
  });

  it("payment timeout voids the payment; a late PaymentProcessed does not revive the order", () => {
    const r = run([[1000, { kind: "timeout" }], [1001, { kind: "payment-processed" }], [1002, { kind: "refunded" }]]);
    expect(r.saga).toMatchObject({ state: "CANCELLED", reason: "payment-timeout" });
    expect(r.commands).toEqual(["refund#1", "cancelled:payment-timeout"]);
  });

  it("stock timeout refunds and releases; cancels once both are acknowledged, in either order", () => {
    const base: Array<[number, SagaInput]> = [[10, { kind: "payment-processed" }], [2010, { kind: "timeout" }]];
    for (const acks of [["released", "refunded"], ["refunded", "released"]] as const) {
      const r = run([...base, [2020, { kind: acks[0] }], [2021, { kind: "stock-reserved" }], [2030, { kind: acks[1] }]]);
      expect(r.saga).toMatchObject({ state: "CANCELLED", reason: "stock-timeout" });
      expect(r.commands).toEqual(["reserve-stock", "refund#1", "release#1", "cancelled:stock-timeout"]);
    }
  });

  it("an unacknowledged compensation is requested again with backoff, then the saga stops in STUCK; resume retries; a late ack finishes it", () => {
    const r = run([
      [10, { kind: "payment-processed" }],
      [2010, { kind: "timeout" }], // refund#1 release#1, retry at +100
      [2050, { kind: "released" }],
      [2110, { kind: "timeout" }], // attempt 2, next at +200
      [2310, { kind: "timeout" }], // attempt 3, next at +400
      [2710, { kind: "timeout" }], // out of attempts
    ]);
    expect(r.saga).toMatchObject({ state: "STUCK", deadlineAt: undefined, refundPending: true, releasePending: false, attempts: 3 });
    expect(r.commands).toEqual(["reserve-stock", "refund#1", "release#1", "refund#2", "refund#3"]);
    expect(r.notes.slice(-1)).toEqual(["compensation-failed"]);
    expect(decide(r.saga, { kind: "timeout" }, T0 + 99_999, t)).toBeUndefined();

    const resumed = run([[3000, { kind: "resume" }], [3050, { kind: "refunded" }]], r.saga);
    expect(resumed.commands).toEqual(["refund#1", "cancelled:stock-timeout"]);
    expect(resumed.saga.state).toBe("CANCELLED");
    // A late acknowledgement also ends a stuck saga.
    expect(decide(r.saga, { kind: "refunded" }, T0 + 5000, t)?.next.state).toBe("CANCELLED");
  });

  it("resume only applies to STUCK", () => {
    expect(decide(startSaga("o1", T0, t), { kind: "resume" }, T0, t)).toBeUndefined();
  });
});
