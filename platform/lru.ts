/**
 * A map that keeps at most `capacity` entries, dropping the least recently used (read or
 * written); capacity 0 keeps nothing.
 * @example const recent = new LruMap<string, Order>(10_000); recent.set(order.id, order);
 */
export class LruMap<K, V> {
  readonly #map = new Map<K, V>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.#map.size;
  }

  /** The value, now the most recently used. */
  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined && this.#map.size > 1) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    if (this.capacity <= 0) return;
    this.#map.delete(key);
    if (this.#map.size >= this.capacity) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(key, value);
  }
}
