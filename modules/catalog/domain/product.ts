/** A product as the catalog owns it. Money in integer minor units. */
export interface Product {
  readonly id: string;
  readonly sku: string;
  readonly name: string;
  readonly priceCents: number;
  /** Starts at 1, +1 per change. */
  readonly version: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** The changes an update may carry; absent fields stay as they are. */
export interface ProductChanges {
  readonly name?: string;
  readonly priceCents?: number;
}

/** A new product from validated input. */
export function newProduct(input: { id: string; sku: string; name: string; priceCents: number; now: number }): Product {
  return { id: input.id, sku: input.sku, name: input.name, priceCents: input.priceCents, version: 1, createdAt: input.now, updatedAt: input.now };
}

/** Applies changes; returns undefined when nothing would change (no new version, no event). */
export function changeProduct(p: Product, changes: ProductChanges, now: number): Product | undefined {
  const name = changes.name ?? p.name;
  const priceCents = changes.priceCents ?? p.priceCents;
  if (name === p.name && priceCents === p.priceCents) return undefined;
  return { ...p, name, priceCents, version: p.version + 1, updatedAt: now };
}
