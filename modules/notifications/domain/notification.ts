/** What a notification is about: one final outcome of an order. */
export type NotificationKind = "order-confirmed" | "order-cancelled";

/** A message recorded for a customer about one outcome of one order. Times in ms since epoch. */
export interface Notification {
  readonly orderId: string;
  readonly customerId: string;
  readonly kind: NotificationKind;
  readonly message: string;
  readonly createdAt: number;
}

/** An event that decodes but breaks the publisher's contract; the bus retries, then dead-letters it. */
export class InvalidEventError extends Error {
  override readonly name = "InvalidEventError";
}

/** Integer minor units as a decimal amount: 1250 -> "12.50", 5 -> "0.05", -1999 -> "-19.99". */
export function formatCents(cents: number): string {
  const abs = Math.abs(cents);
  const units = Math.floor(abs / 100);
  const rest = String(abs % 100).padStart(2, "0");
  return `${cents < 0 ? "-" : ""}${units}.${rest}`;
}

/** The cancellation reasons orders publishes, as a customer should read them. */
const REASONS: Readonly<Record<string, string>> = {
  "insufficient-credit": "your credit limit does not cover it",
  "out-of-stock": "an item is out of stock",
  "payment-timeout": "the payment did not complete in time",
  "stock-timeout": "the items could not be reserved in time",
};

/** A kebab-case cancellation reason as text; an unknown one reads as its words, none as "no reason given". */
export function describeReason(reason: string): string {
  if (!reason) return "no reason given";
  return REASONS[reason] ?? reason.replaceAll("-", " ");
}

/** The keys every outcome must carry: a notification without them cannot be stored or found. */
function checkKeys(event: string, orderId: string, customerId: string): void {
  if (!orderId) throw new InvalidEventError(`${event} without an order id`);
  if (!customerId) throw new InvalidEventError(`${event} ${orderId} without a customer id`);
}

/** The message for a confirmed order. */
export function orderConfirmed(e: { orderId: string; customerId: string; totalCents: number; at: number }): Notification {
  checkKeys("OrderConfirmed", e.orderId, e.customerId);
  return { orderId: e.orderId, customerId: e.customerId, kind: "order-confirmed", message: `Your order ${e.orderId} is confirmed: ${formatCents(e.totalCents)}`, createdAt: e.at };
}

/** The message for a cancelled order. */
export function orderCancelled(e: { orderId: string; customerId: string; reason: string; at: number }): Notification {
  checkKeys("OrderCancelled", e.orderId, e.customerId);
  return { orderId: e.orderId, customerId: e.customerId, kind: "order-cancelled", message: `Your order ${e.orderId} was cancelled: ${describeReason(e.reason)}`, createdAt: e.at };
}
