import { describe, expect, it } from "vitest";
import { LruMap } from "./lru.ts";

describe("LruMap", () => {
  it("drops the least recently used entry, where reading an entry makes it recent; capacity 0 keeps nothing", () => {
    const m = new LruMap<string, number>(2);
    m.set("a", 1);
    m.set("b", 2);
    expect(m.get("a")).toBe(1); // a is now more recent than b
    m.set("c", 3);
    expect([m.get("a"), m.get("b"), m.get("c"), m.size]).toEqual([1, undefined, 3, 2]);
    m.set("c", 4); // rewriting keeps the size
    expect([m.get("c"), m.size]).toEqual([4, 2]);
    const none = new LruMap<string, number>(0);
    none.set("a", 1);
    expect([none.get("a"), none.size]).toEqual([undefined, 0]);
  });

  it("keeps exactly the most recently used entries through many evictions, reads and rewrites", () => {
    // The reference: the most recently used last, the least recently used dropped first.
    for (const capacity of [1, 2, 3, 7, 16]) {
      const m = new LruMap<number, number>(capacity);
      let recent: number[] = [];
      const touch = (k: number) => (recent = [...recent.filter((x) => x !== k), k]);
      // A fixed walk over 3 × capacity keys (deterministic: a multiplicative sequence).
      for (let i = 0, x = 7; i < 4_000; i++, x = (x * 48_271) % 2_147_483_647) {
        const key = x % (3 * capacity);
        if (x % 3 === 0) {
          expect(m.get(key)).toBe(recent.includes(key) ? key * 10 : undefined);
          if (recent.includes(key)) touch(key);
        } else {
          m.set(key, key * 10);
          touch(key);
          if (recent.length > capacity) recent = recent.slice(1);
        }
        expect(m.size).toBe(recent.length);
      }
      for (const k of recent) expect(m.get(k)).toBe(k * 10);
    }
  });
});

