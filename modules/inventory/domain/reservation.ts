import type { Stock } from "./stock.ts";

/** A product and a quantity of an order. */
export interface Line {
  readonly productId: string;
  readonly quantity: number;
}

/** What was decided for an order, once. */
export type ReservationStatus = "RESERVED" | "FAILED" | "RELEASED";

/** An order's reservation as recorded: its status and the lines it holds (RESERVED only). */
export interface Reservation {
  readonly orderId: string;
  readonly status: ReservationStatus;
  readonly lines: readonly Line[];
}

/** Why a reservation was refused (the InventoryReservationFailed reason). */
export type RefusalReason = "out-of-stock" | "released";

/**
 * An order's lines with one line per product (quantities of repeated products summed), sorted by
 * product id — every transaction then touches products in the same order, so two of them never
 * wait on each other's rows in opposite orders.
 */
export function mergeLines(lines: readonly Line[]): Line[] {
  const sums = new Map<string, number>();
  for (const l of lines) sums.set(l.productId, (sums.get(l.productId) ?? 0) + l.quantity);
  return [...sums].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([productId, quantity]) => ({ productId, quantity }));
}

/** The answer to a reservation request. */
export type ReserveDecision =
  /** Reserve every line (all had enough) and record RESERVED. */
  | { readonly kind: "reserve"; readonly lines: readonly Line[] }
  /** Reserve nothing and record FAILED: `short` are the lines that lacked stock. */
  | { readonly kind: "refuse"; readonly short: readonly Line[] }
  /** The order was decided before: answer the same again, change nothing. */
  | { readonly kind: "repeat"; readonly outcome: { readonly reserved: true } | { readonly reserved: false; readonly reason: RefusalReason } };

/**
 * All lines or none. `lines` are merged (see `mergeLines`); `stockOf` gives each product's
 * current stock. A known order gets its first answer again: a redelivered or re-sent request
 * never reserves twice, and an order released before its request came is refused.
 */
export function decideReservation(known: Reservation | undefined, lines: readonly Line[], stockOf: (productId: string) => Stock): ReserveDecision {
  if (known) {
    switch (known.status) {
      case "RESERVED":
        return { kind: "repeat", outcome: { reserved: true } };
      case "FAILED":
        return { kind: "repeat", outcome: { reserved: false, reason: "out-of-stock" } };
      case "RELEASED":
        // Released after a reservation, or before the request arrived: either way, not again.
        return { kind: "repeat", outcome: { reserved: false, reason: "released" } };
    }
  }
  const short = lines.filter((l) => stockOf(l.productId).available < l.quantity);
  return short.length > 0 ? { kind: "refuse", short } : { kind: "reserve", lines };
}

/** The answer to a release request; every one of them is acknowledged with InventoryReleased. */
export type ReleaseDecision =
  /** Give back every reserved line and record RELEASED. */
  | { readonly kind: "release"; readonly lines: readonly Line[] }
  /** Nothing was reserved yet: record RELEASED so a later request is refused. */
  | { readonly kind: "tombstone" }
  /** Released or refused before: nothing to do but acknowledge again. */
  | { readonly kind: "acknowledge" };

/** Releases an order once, whatever the attempt. */
export function decideRelease(known: Reservation | undefined): ReleaseDecision {
  if (!known) return { kind: "tombstone" };
  return known.status === "RESERVED" ? { kind: "release", lines: known.lines } : { kind: "acknowledge" };
}
