/** An order's status in the read model, as the public contract spells it. */
export type OrderStatus = "PENDING" | "CONFIRMED" | "CANCELLED";

/** A customer's name as last seen in customers' events. */
export interface CustomerName {
  readonly id: string;
  readonly name: string;
}

/** A product's name at a catalog version; a version not newer than the stored one is ignored. */
export interface ProductName {
  readonly id: string;
  readonly name: string;
  /** The catalog's product version: 1 when created, +1 per change. */
  readonly version: number;
}

/** One line of a placed order, by product id only (the name is joined when read). */
export interface PlacedLine {
  readonly productId: string;
  readonly quantity: number;
  readonly unitPriceCents: number;
}

/** An order as placed, from OrderCreated. Money in integer minor units, times in ms. */
export interface PlacedOrder {
  readonly id: string;
  readonly customerId: string;
  readonly totalCents: number;
  readonly createdAt: number;
  readonly lines: readonly PlacedLine[];
}

/** One line of an order in a customer's history. `productName` is "" until the product is known. */
export interface HistoryLine extends PlacedLine {
  readonly productName: string;
}

/** One order in a customer's history. `customerName` is "" until the customer is known. */
export interface HistoryOrder {
  readonly id: string;
  readonly customerId: string;
  readonly customerName: string;
  readonly status: OrderStatus;
  readonly totalCents: number;
  readonly createdAt: number;
  readonly lines: readonly HistoryLine[];
}

/** The status a newly placed order starts in. */
export const INITIAL_STATUS: OrderStatus = "PENDING";

/** A status the saga ends an order in; once recorded it never changes. */
export type FinalStatus = Exclude<OrderStatus, "PENDING">;

/** The saga's final outcome of an order, from OrderConfirmed or OrderCancelled. `at`: when it occurred (ms). */
export interface OrderOutcome {
  readonly orderId: string;
  readonly status: FinalStatus;
  readonly at: number;
}

/** Order rows (already in display order) and their line rows (any order) -> history orders. */
export function assembleHistory(
  orders: readonly Omit<HistoryOrder, "lines">[],
  lines: readonly (HistoryLine & { readonly orderId: string; readonly lineNo: number })[],
): HistoryOrder[] {
  const byOrder = new Map<string, (HistoryLine & { lineNo: number })[]>();
  for (const { orderId, ...line } of lines) {
    const list = byOrder.get(orderId);
    if (list) list.push(line);
    else byOrder.set(orderId, [line]);
  }
  return orders.map((o) => ({
    ...o,
    lines: (byOrder.get(o.id) ?? []).sort((a, b) => a.lineNo - b.lineNo).map(({ lineNo: _, ...line }) => line),
  }));
}

/** An event that decodes but breaks the publisher's contract; the bus retries, then dead-letters it. */
export class InvalidEventError extends Error {
  override readonly name = "InvalidEventError";
}

/** Rejects an order the read model cannot key: no order id, no customer id or a line without a product. */
export function checkPlacedOrder(o: PlacedOrder): PlacedOrder {
  if (!o.id) throw new InvalidEventError("OrderCreated without an order id");
  if (!o.customerId) throw new InvalidEventError(`OrderCreated ${o.id} without a customer id`);
  const bad = o.lines.findIndex((l) => !l.productId);
  if (bad >= 0) throw new InvalidEventError(`OrderCreated ${o.id}: line ${bad} has no product id`);
  return o;
}

/** Rejects an outcome the read model cannot key: no order id. */
export function checkOutcome(o: OrderOutcome): OrderOutcome {
  if (!o.orderId) throw new InvalidEventError(`${o.status} outcome without an order id`);
  return o;
}

/** The error for an outcome that contradicts the final status already recorded (a publisher bug, not a retry). */
export function contradictingOutcome(o: OrderOutcome): InvalidEventError {
  return new InvalidEventError(`order ${o.orderId} already has a different final status than ${o.status}: a final status never changes`);
}
