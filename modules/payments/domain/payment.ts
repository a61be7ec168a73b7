/**
 * Where an order's payment is.
 * - PENDING: the order arrived before its customer's registration; charged when it arrives.
 * - CAPTURED: the total was charged against the customer's credit.
 * - FAILED: the charge was refused (`reason`); nothing was charged.
 * - REFUNDED: a capture was given back.
 * - VOIDED: cancelled before any charge; a later charge request for the order charges nothing.
 */
export type PaymentStatus = "PENDING" | "CAPTURED" | "FAILED" | "REFUNDED" | "VOIDED";

/** The payment of one order: one row per order, whatever happens to it. Money in integer cents. */
export interface Payment {
  readonly orderId: string;
  readonly customerId: string;
  /** The order total (0 when a void came before the order, so the total is unknown). */
  readonly amountCents: number;
  readonly status: PaymentStatus;
  /** Why it failed, kebab-case; "" unless FAILED. */
  readonly reason: string;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** The reason of a charge refused because the customer's available credit is below the total. */
export const INSUFFICIENT_CREDIT = "insufficient-credit";

/** What a refund request answers for a payment already settled: what was given back, if anything. */
export function refundedAmount(p: Payment): number {
  return p.status === "REFUNDED" ? p.amountCents : 0;
}

/** An order's charge as the saga asks for it (from OrderCreated). */
export interface ChargeRequest {
  readonly orderId: string;
  readonly customerId: string;
  readonly totalCents: number;
}

/** A saga compensation: give the order's payment back, or void it (from PaymentRefundRequested). */
export interface RefundRequest {
  readonly orderId: string;
  readonly customerId: string;
}

/** A customer's registration (from CustomerRegistered): opens the account with this limit. */
export interface Registration {
  readonly customerId: string;
  readonly creditLimitCents: number;
}

/** An event that decodes but breaks the publisher's contract; the bus retries, then dead-letters it. */
export class InvalidEventError extends Error {
  override readonly name = "InvalidEventError";
}

const isCents = (n: number) => Number.isSafeInteger(n) && n >= 0;

/** Rejects a charge the module cannot key or book: no order or customer id, or a total that is not whole non-negative cents. */
export function checkCharge(c: ChargeRequest): ChargeRequest {
  if (!c.orderId) throw new InvalidEventError("OrderCreated without an order id");
  if (!c.customerId) throw new InvalidEventError(`OrderCreated ${c.orderId} without a customer id`);
  if (!isCents(c.totalCents)) throw new InvalidEventError(`OrderCreated ${c.orderId}: total ${c.totalCents} is not a non-negative number of cents`);
  return c;
}

/** Rejects a refund request without an order or customer id. */
export function checkRefund(r: RefundRequest): RefundRequest {
  if (!r.orderId) throw new InvalidEventError("PaymentRefundRequested without an order id");
  if (!r.customerId) throw new InvalidEventError(`PaymentRefundRequested ${r.orderId} without a customer id`);
  return r;
}

/** Rejects a registration without a customer id or with a limit that is not whole non-negative cents. */
export function checkRegistration(r: Registration): Registration {
  if (!r.customerId) throw new InvalidEventError("CustomerRegistered without a customer id");
  if (!isCents(r.creditLimitCents)) throw new InvalidEventError(`CustomerRegistered ${r.customerId}: limit ${r.creditLimitCents} is not a non-negative number of cents`);
  return r;
}
