/** A product's stock, derived from its stream. Invariant: restocked = available + reserved, none negative. */
export interface Stock {
  /** Units that can be reserved. */
  readonly available: number;
  /** Units reserved by orders and not released. */
  readonly reserved: number;
  /** Units ever restocked. */
  readonly restocked: number;
}

/** The stock of a product with no events. */
export const NO_STOCK: Stock = { available: 0, reserved: 0, restocked: 0 };

/** What happens to a product's stock: the events of its stream. */
export type StockEvent =
  | { readonly type: "restocked"; readonly quantity: number }
  | { readonly type: "reserved"; readonly orderId: string; readonly quantity: number }
  | { readonly type: "released"; readonly orderId: string; readonly quantity: number };

/** Folds one event into the stock. Pure. */
export function evolve(s: Stock, e: StockEvent): Stock {
  switch (e.type) {
    case "restocked":
      return { available: s.available + e.quantity, reserved: s.reserved, restocked: s.restocked + e.quantity };
    case "reserved":
      return { available: s.available - e.quantity, reserved: s.reserved + e.quantity, restocked: s.restocked };
    case "released":
      return { available: s.available + e.quantity, reserved: s.reserved - e.quantity, restocked: s.restocked };
  }
}

/** Units one restock may add (the input limit). */
export const MAX_RESTOCK = 1_000_000_000;

/** A restock would take the product past the largest count kept exactly (2^53). */
export class StockLimitExceeded extends Error {
  override readonly name = "StockLimitExceeded";
}

/** Decides a restock of a validated quantity (1..MAX_RESTOCK). */
export function decideRestock(s: Stock, quantity: number): StockEvent {
  if (s.restocked + quantity > Number.MAX_SAFE_INTEGER) throw new StockLimitExceeded(`restocking ${quantity} would exceed ${Number.MAX_SAFE_INTEGER} units`);
  return { type: "restocked", quantity };
}
