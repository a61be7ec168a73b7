/** Where an order is in the placement saga. PENDING until the saga confirms or cancels it. */
export type OrderStatus = "PENDING" | "CONFIRMED" | "CANCELLED";

/** A line as the client asked for it, before pricing. */
export interface LineRequest {
  readonly productId: string;
  readonly quantity: number;
}

/** A line priced at placement time. Money in integer minor units. */
export interface OrderLine extends LineRequest {
  readonly unitPriceCents: number;
  readonly lineTotalCents: number;
}

/** An order as the orders module owns it. */
export interface Order {
  readonly id: string;
  readonly customerId: string;
  readonly status: OrderStatus;
  readonly totalCents: number;
  /** In request order. */
  readonly lines: readonly OrderLine[];
  /** Kebab-case reason of a cancellation; empty otherwise. */
  readonly reason: string;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** What a client asks for: who orders, and which lines. */
export interface OrderRequest {
  readonly customerId: string;
  readonly lines: readonly LineRequest[];
}

/** The outcome of pricing: the priced lines, or why they cannot be priced. */
export type Pricing =
  | { readonly kind: "priced"; readonly lines: readonly OrderLine[]; readonly totalCents: number }
  /** Indexes of the lines whose product has no price (unknown to the catalog). */
  | { readonly kind: "unknown-products"; readonly lineIndexes: readonly number[] }
  /** The total would not be an exact integer in a JS number (> 2^53 cents). */
  | { readonly kind: "total-too-large" };

/**
 * Prices each line with the unit price of its product (`prices`: product id -> cents):
 * line total = unit price × quantity, order total = sum of line totals.
 */
export function priceLines(lines: readonly LineRequest[], prices: ReadonlyMap<string, number>): Pricing {
  const unknown = lines.flatMap((l, i) => (prices.has(l.productId) ? [] : [i]));
  if (unknown.length > 0) return { kind: "unknown-products", lineIndexes: unknown };
  const priced = lines.map((l) => {
    const unitPriceCents = prices.get(l.productId)!;
    return { productId: l.productId, quantity: l.quantity, unitPriceCents, lineTotalCents: unitPriceCents * l.quantity };
  });
  const totalCents = orderTotal(priced);
  if (!Number.isSafeInteger(totalCents) || !priced.every((l) => Number.isSafeInteger(l.lineTotalCents))) return { kind: "total-too-large" };
  return { kind: "priced", lines: priced, totalCents };
}

/** Sum of the line totals. */
export function orderTotal(lines: readonly Pick<OrderLine, "lineTotalCents">[]): number {
  return lines.reduce((sum, l) => sum + l.lineTotalCents, 0);
}

/** A new PENDING order from priced lines. */
export function newOrder(input: { id: string; customerId: string; lines: readonly OrderLine[]; totalCents: number; now: number }): Order {
  return {
    id: input.id,
    customerId: input.customerId,
    status: "PENDING",
    totalCents: input.totalCents,
    lines: input.lines,
    reason: "",
    createdAt: input.now,
    updatedAt: input.now,
  };
}

/**
 * The canonical text of a request, the input of the idempotency hash: the same customer and the
 * same lines in the same order give the same text, whatever the JSON key order or whitespace of
 * the client. The version prefix lets a future change of the normalisation never match an old hash.
 */
export function requestFingerprint(req: OrderRequest): string {
  return `place-order/v1:${JSON.stringify([req.customerId, req.lines.map((l) => [l.productId, l.quantity])])}`;
}

/** Indexes of lines repeating the product of an earlier line, each with the index it repeats. */
export function duplicateLines(lines: readonly Pick<LineRequest, "productId">[]): Array<{ index: number; firstIndex: number }> {
  const first = new Map<string, number>();
  const dups: Array<{ index: number; firstIndex: number }> = [];
  lines.forEach((l, index) => {
    const seen = first.get(l.productId);
    if (seen === undefined) first.set(l.productId, index);
    else dups.push({ index, firstIndex: seen });
  });
  return dups;
}
