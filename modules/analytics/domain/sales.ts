/** A product as captured from the catalog's table: its current name and price at a catalog version. */
export interface CapturedProduct {
  readonly id: string;
  readonly name: string;
  readonly priceCents: number;
  /** The catalog row's version: 1 when created, +1 per change. */
  readonly version: number;
}

/** One line of a placed order (from OrderCreated): the price is the one the order was placed at. */
export interface SaleLine {
  readonly productId: string;
  readonly quantity: number;
  readonly unitPriceCents: number;
}

/** What analytics knows of an order so far; either fact may arrive first. */
export interface OrderFacts {
  readonly orderId: string;
  /** When it was placed; null until OrderCreated (and its lines) arrived. */
  readonly createdAt: number | null;
  /** When it was confirmed; null until OrderConfirmed arrived. */
  readonly confirmedAt: number | null;
  /** The UTC day of `confirmedAt`, the day its sales count on. */
  readonly confirmedDay: string | null;
  /** Whether its lines are counted in the daily sales. */
  readonly counted: boolean;
  /** Optimistic concurrency: the version the facts were read at. */
  readonly version: number;
}

/** One product's share of an order: what is added to that product's day when the order counts. */
export interface ProductSale {
  readonly productId: string;
  readonly units: number;
  readonly revenueCents: number;
}

/** One product's sales on one day, as served. `productName` is "" until the product is captured. */
export interface DailySales {
  readonly day: string;
  readonly productId: string;
  readonly productName: string;
  readonly unitsSold: number;
  readonly revenueCents: number;
  readonly orders: number;
}

/** An event that decodes but cannot be used; the bus retries it, then dead-letters it. */
export class InvalidEventError extends Error {
  override readonly name = "InvalidEventError";
}

const MS_PER_DAY = 86_400_000;

/**
 * The UTC day of an instant, `YYYY-MM-DD`.
 * @example utcDay(Date.UTC(2025, 0, 2, 23, 59)) // "2025-01-02"
 */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Whether `text` is a real calendar day written `YYYY-MM-DD` (years 0001–9999). */
export function isDay(text: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
  const ms = Date.parse(`${text}T00:00:00Z`);
  return Number.isFinite(ms) && utcDay(ms) === text && text >= "0001-01-01";
}

/** Days from `from` to `to` (0 for the same day); both valid days. */
export function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / MS_PER_DAY);
}

/**
 * An order's lines summed per product, in order of first appearance: an order with two lines of
 * one product counts as one order of it.
 */
export function salesOf(lines: readonly SaleLine[]): ProductSale[] {
  const byProduct = new Map<string, { units: number; revenueCents: number }>();
  for (const l of lines) {
    const s = byProduct.get(l.productId) ?? { units: 0, revenueCents: 0 };
    s.units += l.quantity;
    s.revenueCents += l.quantity * l.unitPriceCents;
    byProduct.set(l.productId, s);
  }
  return [...byProduct].map(([productId, s]) => ({ productId, ...s }));
}

/** A whole number from a captured value: a JSON number, or the string a very large int8 becomes. */
function wholeNumber(v: unknown): number | undefined {
  const n = typeof v === "number" ? v : typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * A catalog products row, as change data capture delivers it (column names of the catalog's
 * table: `id`, `name`, `price_cents`, `version`), checked. This is the coupling CDC brings: the
 * captured table's columns are the contract.
 */
export function capturedProduct(row: Readonly<Record<string, unknown>> | undefined): CapturedProduct {
  const id = row?.id;
  const name = row?.name;
  const priceCents = wholeNumber(row?.price_cents);
  const version = wholeNumber(row?.version);
  if (typeof id !== "string" || id === "") throw new InvalidEventError("captured product row without an id");
  if (typeof name !== "string") throw new InvalidEventError(`captured product ${id} without a name`);
  if (priceCents === undefined || version === undefined) throw new InvalidEventError(`captured product ${id} without a whole price_cents and version`);
  return { id, name, priceCents, version };
}

/** Rejects an order event the read model cannot key or count. */
export function checkOrder(orderId: string, lines: readonly SaleLine[] = []): void {
  if (!orderId) throw new InvalidEventError("order event without an order id");
  const bad = lines.findIndex((l) => !l.productId || !Number.isSafeInteger(l.quantity) || l.quantity <= 0 || !Number.isSafeInteger(l.unitPriceCents) || l.unitPriceCents < 0);
  if (bad >= 0) throw new InvalidEventError(`OrderCreated ${orderId}: line ${bad} has no product, a bad quantity or a bad price`);
}

/** An order fact as it arrives: placed (OrderCreated) or confirmed (OrderConfirmed), with its time. */
export type OrderFact = { readonly kind: "created"; readonly at: number } | { readonly kind: "confirmed"; readonly at: number };

/** What recording a fact changes: the order's next facts, and the day to count its sales on once both facts are known. */
export interface FactDecision {
  readonly next: OrderFacts;
  /** True when the order had no facts yet (insert; otherwise update the version read). */
  readonly isNew: boolean;
  /** Set when this fact completes the order: add its lines' sales to this UTC day, once. */
  readonly countOn?: string;
}

/**
 * Records an order fact. Returns undefined for a fact already known (a redelivery or a
 * re-publish under a new event id: no effect). The sales count when the second of the two facts
 * arrives, whichever it is, on the UTC day of the confirmation.
 * @example recordFact(undefined, "o1", { kind: "confirmed", at }) // facts kept, nothing counted yet
 */
export function recordFact(current: OrderFacts | undefined, orderId: string, fact: OrderFact): FactDecision | undefined {
  if (fact.kind === "created" ? current?.createdAt != null : current?.confirmedAt != null) return undefined;
  const base: OrderFacts = current ?? { orderId, createdAt: null, confirmedAt: null, confirmedDay: null, counted: false, version: 0 };
  const known: OrderFacts = fact.kind === "created" ? { ...base, createdAt: fact.at } : { ...base, confirmedAt: fact.at, confirmedDay: utcDay(fact.at) };
  const completes = !known.counted && known.createdAt !== null && known.confirmedDay !== null;
  return {
    next: { ...known, counted: known.counted || completes, version: base.version + 1 },
    isNew: current === undefined,
    ...(completes && { countOn: known.confirmedDay! }),
  };
}
