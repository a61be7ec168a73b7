import type { ModuleStorage } from "../../../platform/module.ts";
import type { DailySales } from "../domain/sales.ts";
import { salesStore } from "../db/store.ts";

/** Every product's confirmed sales on one UTC day, highest revenue first (ties by product id). */
export function listDailySales(storage: ModuleStorage, day: string): Promise<DailySales[]> {
  return salesStore.salesOfDay(storage, day);
}
