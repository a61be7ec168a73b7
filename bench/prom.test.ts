import { describe, expect, it } from "vitest";
import { buckets, increase, parseProm, quantile, total, value } from "./prom.ts";

const scrape = (a: number[], extra = "") => `# HELP h latency
# TYPE h histogram
h_bucket{le="0.001",consumer="c"} ${a[0]}
h_bucket{le="0.002",consumer="c"} ${a[1]}
h_bucket{le="0.005",consumer="c"} ${a[2]}
h_bucket{le="+Inf",consumer="c"} ${a[3]}
h_bucket{le="0.001",consumer="other"} 99
h_bucket{le="+Inf",consumer="other"} 99
h_sum{consumer="c"} 1
h_count{consumer="c"} ${a[3]}
g{module="orders"} 3
g{module="catalog"} 4
${extra}`;

describe("bench prometheus helpers", () => {
  it("parses labelled samples and sums gauges across other labels", () => {
    const s = parseProm(scrape([1, 2, 3, 4], 'esc{x="a\\"b"} 1e3'));
    expect(value(s, "g", { module: "orders" })).toBe(3);
    expect(value(s, "g")).toBe(7);
    expect(value(s, "esc", { x: 'a"b' })).toBe(1000);
    expect(value(s, "missing")).toBeUndefined();
  });

  it("interpolates quantiles inside the bucket of the increase between two scrapes", () => {
    const before = buckets(parseProm(scrape([10, 10, 10, 10])), "h", { consumer: "c" });
    const after = buckets(parseProm(scrape([10, 60, 110, 110])), "h", { consumer: "c" });
    const d = increase(before, after);
    expect(total(d)).toBe(100);
    // 50 observations in (1 ms, 2 ms], 50 in (2 ms, 5 ms].
    expect(quantile(d, 0.5)!.value).toBeCloseTo(0.002, 9);
    expect(quantile(d, 0.25)!.value).toBeCloseTo(0.0015, 9);
    expect(quantile(d, 0.99)!.value).toBeCloseTo(0.002 + 0.003 * (49 / 50), 9);
  });

  it("starts the first bucket at zero, flags the +Inf bucket, and has no quantile without data", () => {
    expect(quantile({ le: [0.001, Infinity], count: [4, 4] }, 0.5)).toEqual({ value: 0.0005, overflow: false });
    expect(quantile({ le: [0.001, Infinity], count: [1, 10] }, 0.99)).toEqual({ value: 0.001, overflow: true });
    expect(quantile({ le: [0.001, Infinity], count: [0, 0] }, 0.5)).toBeUndefined();
  });
});
