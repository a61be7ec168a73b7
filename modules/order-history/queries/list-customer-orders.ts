import type { ModuleStorage } from "../../../platform/module.ts";
import { assembleHistory, type HistoryOrder } from "../domain/order-history.ts";
import { historyStore } from "../db/store.ts";

/**
 * A customer's orders, newest first, with customer and product names ("" while a name's event has
 * not arrived yet). An unknown customer has no orders. Two indexed queries whatever the number
 * of orders. Orders are read first: an order and its lines commit together, so every order read
 * has its lines in the second read; lines of an order that committed in between are ignored.
 */
export async function listCustomerOrders(storage: ModuleStorage, customerId: string): Promise<HistoryOrder[]> {
  const orders = await historyStore.ordersOf(storage, customerId);
  if (orders.length === 0) return [];
  return assembleHistory(orders, await historyStore.linesOf(storage, customerId));
}
