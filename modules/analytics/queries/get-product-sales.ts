import type { ModuleStorage } from "../../../platform/module.ts";
import type { DailySales } from "../domain/sales.ts";
import { salesStore } from "../db/store.ts";

/** A product's sales over a range of UTC days, with its captured name and price. */
export interface ProductSales {
  readonly productId: string;
  /** "" until the product is captured. */
  readonly productName: string;
  /** The current catalog price; 0 until the product is captured. */
  readonly priceCents: number;
  readonly days: readonly DailySales[];
  readonly totalUnitsSold: number;
  readonly totalRevenueCents: number;
}

/**
 * A product's confirmed sales from `from` to `to` (UTC days, inclusive); days without sales are
 * left out. An unknown product has none.
 */
export async function getProductSales(storage: ModuleStorage, productId: string, from: string, to: string): Promise<ProductSales> {
  const [product, days] = await Promise.all([salesStore.product(storage, productId), salesStore.salesOfProduct(storage, productId, from, to)]);
  return {
    productId,
    productName: product?.name ?? "",
    priceCents: product?.priceCents ?? 0,
    days,
    totalUnitsSold: days.reduce((n, d) => n + d.unitsSold, 0),
    totalRevenueCents: days.reduce((n, d) => n + d.revenueCents, 0),
  };
}
