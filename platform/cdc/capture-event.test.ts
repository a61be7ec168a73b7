import { describe, expect, it } from "vitest";
import { defineModule } from "../module.ts";
import { aggregateKey, stableEventId } from "./capture-event.ts";
import { capturesOf } from "./capture.ts";

const mod = (name: string, captures?: Array<{ module: string; table: string }>) => defineModule({ name, migrations: { sqlite: [] }, ...(captures && { captures }), start: () => ({}) });

describe("platform capture: events and declarations", () => {
  it("derives a UUID (v7 layout) from a change's position: the same for a repeat, another for any other change", () => {
    const ms = Date.UTC(2025, 0, 2, 3, 4, 5, 6);
    const id = stableEventId(ms, "shop", "selaras_catalog_cdc", "23844000:0");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(id.replace(/-/g, "").slice(0, 12)).toBe(ms.toString(16).padStart(12, "0"));
    expect(stableEventId(ms, "shop", "selaras_catalog_cdc", "23844000:0")).toBe(id);
    expect(stableEventId(ms, "shop", "selaras_catalog_cdc", "23844000:1")).not.toBe(id);
    expect(stableEventId(ms, "other", "selaras_catalog_cdc", "23844000:0")).not.toBe(id);
  });

  it("keys a row by its primary key: one column as text, several as a JSON array, none as the table", () => {
    expect(aggregateKey({ id: 7, name: "x" }, ["id"], "t")).toBe("7");
    expect(aggregateKey({ a: "x", b: 2 }, ["a", "b"], "t")).toBe('["x",2]');
    expect(aggregateKey({ a: 1 }, [], "t")).toBe("t");
    expect(aggregateKey(null, ["id"], "t")).toBe("t");
  });

  it("collects declared captures once each and names every bad declaration", () => {
    const ok = capturesOf([mod("catalog"), mod("a", [{ module: "catalog", table: "products" }]), mod("b", [{ module: "catalog", table: "products" }])]);
    expect(ok).toEqual([{ module: "catalog", table: "products" }]);
    expect(() => capturesOf([mod("a", [{ module: "nowhere", table: "t" }, { module: "a", table: "x; DROP TABLE y" }])])).toThrow(
      /module a captures nowhere\.t, but there is no module nowhere[\s\S]*module a captures a\."x; DROP TABLE y": not a plain table name/,
    );
  });
});
