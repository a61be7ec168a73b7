import type { ModuleStorage } from "../../../platform/module.ts";
import { assembleHistory, type HistoryOrder } from "../domain/order-history.ts";
import { historyStore } from "../db/store.ts";

/**
 * A customer's orders, newest first, with customer and product names ("" while a name's event has
 * not arrived yet). An unknown customer has no orders. Two indexed queries whatever the number
 * of orders; both run synchronously back to back, so no projection write can land between them.
 */
export function listCustomerOrders(storage: ModuleStorage, customerId: string): HistoryOrder[] {
  const orders = historyStore.ordersOf(storage.db, customerId);
  if (orders.length === 0) return [];
  return assembleHistory(orders, historyStore.linesOf(storage.db, customerId));
}
