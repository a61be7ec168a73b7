import { LruMap } from "../../../platform/lru.ts";
import type { ModuleStorage } from "../../../platform/module.ts";
import type { Order } from "../domain/order.ts";
import { orderStore } from "./store.ts";

/** What a saga step needs of its order: the parts fixed when it was placed. */
export type PlacedOrder = Pick<Order, "id" | "customerId" | "totalCents" | "lines">;

/**
 * The placed part of recent orders, in memory: who, what and how much never change after
 * PlaceOrder commits, so each saga step reads its saga row alone instead of the order and its
 * lines too (two queries fewer per step). Filled by PlaceOrder after its commit and by every read;
 * the least recently used go first. Orders placed by another instance are read once.
 */
export class PlacedOrders {
  readonly #cache: LruMap<string, PlacedOrder>;

  constructor(capacity = 10_000) {
    this.#cache = new LruMap(capacity);
  }

  /** The order as placed; undefined if no such order exists. */
  async get(storage: ModuleStorage, id: string): Promise<PlacedOrder | undefined> {
    const kept = this.#cache.get(id);
    if (kept) return kept;
    const order = await orderStore.byId(storage, id);
    if (order) this.remember(order);
    return order && placed(order);
  }

  /** Call after the order's commit. */
  remember(order: PlacedOrder): void {
    this.#cache.set(order.id, placed(order));
  }
}

const placed = (o: PlacedOrder): PlacedOrder => ({ id: o.id, customerId: o.customerId, totalCents: o.totalCents, lines: o.lines });
