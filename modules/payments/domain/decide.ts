import { changed, isRegistered, unregisteredAccount, type Account } from "./account.ts";
import { INSUFFICIENT_CREDIT, refundedAmount, type ChargeRequest, type Payment, type PaymentStatus, type RefundRequest, type Registration } from "./payment.ts";

/** The account as decided: inserted when `expectedVersion` is null, else written over that version. */
export interface AccountWrite {
  readonly next: Account;
  readonly expectedVersion: number | null;
}

/** A payment as decided: inserted when `expectedStatus` is null, else written over a row still in that status. */
export interface PaymentWrite {
  readonly next: Payment;
  readonly expectedStatus: PaymentStatus | null;
}

/** What the saga is told, one event each. */
export type Outcome =
  | { readonly type: "processed"; readonly orderId: string; readonly customerId: string; readonly amountCents: number }
  | { readonly type: "failed"; readonly orderId: string; readonly customerId: string; readonly reason: string }
  | { readonly type: "refunded"; readonly orderId: string; readonly customerId: string; readonly amountCents: number };

/**
 * Everything one event changes, decided from what was loaded. Every write carries the state it
 * was computed from, so a concurrent change makes it fail and the event is decided again.
 */
export interface Decision {
  readonly account?: AccountWrite;
  readonly payments: readonly PaymentWrite[];
  readonly outcomes: readonly Outcome[];
}

const NOTHING: Decision = { payments: [], outcomes: [] };

function newPayment(c: ChargeRequest, status: PaymentStatus, reason: string, now: number): Payment {
  return { orderId: c.orderId, customerId: c.customerId, amountCents: c.totalCents, status, reason, createdAt: now, updatedAt: now };
}

/** Charges `c` against a registered account: captured when the available credit covers the total, else failed with nothing charged. */
function charge(account: Account, c: ChargeRequest, now: number, pending?: Payment): { account: Account; payment: Payment; outcome: Outcome } {
  const base = pending ?? newPayment(c, "PENDING", "", now);
  if (account.availableCents >= c.totalCents) {
    return {
      account: c.totalCents === 0 ? account : changed(account, { availableCents: account.availableCents - c.totalCents }, now),
      payment: { ...base, status: "CAPTURED", updatedAt: now },
      outcome: { type: "processed", orderId: c.orderId, customerId: c.customerId, amountCents: c.totalCents },
    };
  }
  return {
    account,
    payment: { ...base, status: "FAILED", reason: INSUFFICIENT_CREDIT, updatedAt: now },
    outcome: { type: "failed", orderId: c.orderId, customerId: c.customerId, reason: INSUFFICIENT_CREDIT },
  };
}

/**
 * OrderCreated: charge the order once. A payment that exists in any status means the order was
 * handled (or voided by an earlier refund request, which answered the saga): nothing to do. An
 * account not registered yet parks the charge (PENDING) until the registration arrives — the
 * registration travels on another stream and may come later, and on a single log a handler that
 * failed until then would block the very event it waits for.
 *
 * A refusal does not write the account: deciding on an older balance is the same as having been
 * handled before the change that followed it (available credit only grows by refunds).
 */
export function decideCharge(c: ChargeRequest, account: Account | undefined, payment: Payment | undefined, now: number): Decision {
  if (payment) return NOTHING;
  if (!account || !isRegistered(account)) {
    // The account's version moves with each parked charge, so a registration that loaded the
    // parked charges before this one conflicts instead of leaving it parked for ever.
    const parking: AccountWrite = account ? { next: changed(account, {}, now), expectedVersion: account.version } : { next: unregisteredAccount(c.customerId, now), expectedVersion: null };
    return { account: parking, payments: [{ next: newPayment(c, "PENDING", "", now), expectedStatus: null }], outcomes: [] };
  }
  const r = charge(account, c, now);
  return {
    account: r.account === account ? undefined : { next: r.account, expectedVersion: account.version },
    payments: [{ next: r.payment, expectedStatus: null }],
    outcomes: [r.outcome],
  };
}

/**
 * CustomerRegistered: open the account with the registered limit, all of it available, then charge
 * the orders parked on it, oldest first. The first registration wins: an open account stays as it is.
 */
export function decideRegistration(r: Registration, account: Account | undefined, parked: readonly Payment[], now: number): Decision {
  if (account && isRegistered(account)) return NOTHING;
  const limits = { creditLimitCents: r.creditLimitCents, availableCents: r.creditLimitCents, registeredAt: now };
  let open: Account = account ? changed(account, limits, now) : { customerId: r.customerId, ...limits, version: 1, updatedAt: now };
  const payments: PaymentWrite[] = [];
  const outcomes: Outcome[] = [];
  const oldestFirst = [...parked].sort((a, b) => a.createdAt - b.createdAt || (a.orderId < b.orderId ? -1 : a.orderId > b.orderId ? 1 : 0));
  for (const p of oldestFirst) {
    const charged = charge(open, { orderId: p.orderId, customerId: p.customerId, totalCents: p.amountCents }, now, p);
    open = charged.account;
    payments.push({ next: charged.payment, expectedStatus: "PENDING" });
    outcomes.push(charged.outcome);
  }
  // Charges of one body share the version step: the account is written once.
  const next: Account = account ? { ...open, version: account.version + 1 } : { ...open, version: 1 };
  return { account: { next, expectedVersion: account ? account.version : null }, payments, outcomes };
}

/**
 * PaymentRefundRequested: give a capture back once, or void the payment when nothing was charged
 * yet (so a later OrderCreated charges nothing). Every request is answered with PaymentRefunded —
 * the saga may ask again after a lost answer — but the credit moves only once.
 * `account` is the account of the payment's customer; it is needed only to give a capture back.
 */
export function decideRefund(r: RefundRequest, payment: Payment | undefined, account: Account | undefined, now: number): Decision {
  const answer = (amountCents: number, customerId = r.customerId): Outcome => ({ type: "refunded", orderId: r.orderId, customerId, amountCents });
  if (!payment) {
    const voided: Payment = { orderId: r.orderId, customerId: r.customerId, amountCents: 0, status: "VOIDED", reason: "", createdAt: now, updatedAt: now };
    return { payments: [{ next: voided, expectedStatus: null }], outcomes: [answer(0)] };
  }
  switch (payment.status) {
    case "PENDING":
      return { payments: [{ next: { ...payment, status: "VOIDED", updatedAt: now }, expectedStatus: "PENDING" }], outcomes: [answer(0, payment.customerId)] };
    case "CAPTURED": {
      if (!account) throw new Error(`payment of order ${payment.orderId} is captured but customer ${payment.customerId} has no account`);
      return {
        account: { next: changed(account, { availableCents: account.availableCents + payment.amountCents }, now), expectedVersion: account.version },
        payments: [{ next: { ...payment, status: "REFUNDED", updatedAt: now }, expectedStatus: "CAPTURED" }],
        outcomes: [answer(payment.amountCents, payment.customerId)],
      };
    }
    default:
      return { payments: [], outcomes: [answer(refundedAmount(payment), payment.customerId)] };
  }
}
