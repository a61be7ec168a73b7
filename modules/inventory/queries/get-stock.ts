import type { ModuleStorage } from "../../../platform/module.ts";
import { stockStore, type StockRow } from "../db/store.ts";
import { NO_STOCK } from "../domain/stock.ts";

/** A product's stock from the projection; a product never restocked has all zeros (version 0). */
export async function getStock(storage: ModuleStorage, productId: string): Promise<StockRow> {
  return (await stockStore.byId(storage, productId)) ?? { productId, version: 0, ...NO_STOCK };
}

/** Every product that has a stream, by product id. */
export function listStock(storage: ModuleStorage): Promise<StockRow[]> {
  return stockStore.all(storage);
}
