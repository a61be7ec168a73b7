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
});
