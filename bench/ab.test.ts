import { describe, expect, it } from "vitest";
import { chanceApart, formatSummary, pairs, schedule, summarize, type AbRun } from "./ab.ts";
import type { SweepStep } from "./cpu-sweep.ts";

const step = (rate: number, cpuPerOrderUs: number, main: number, p99Ms: number | null = 40): SweepStep => ({
  rate,
  accepted: rate * 8,
  cores: { main, "module threads": 0.4 },
  totalCores: main + 0.4,
  cpuPerOrderUs,
  saga: { orders: rate * 8, confirmed: rate * 8, p50Ms: 10, p99Ms },
  hops: {},
});

describe("schedule", () => {
  it("alternates which variant starts each round, so drift within a round falls on both", () => {
    expect(schedule(1)).toEqual(["A", "B"]);
    expect(schedule(3)).toEqual(["A", "B", "B", "A", "A", "B"]);
  });
});

describe("summarize", () => {
  const runs: AbRun[] = [
    { variant: "A", round: 1, steps: [step(1000, 1500, 0.85), step(2500, 650, 0.9)] },
    { variant: "B", round: 1, steps: [step(1000, 1400, 0.8), step(2500, 640, 0.88)] },
    { variant: "B", round: 2, steps: [step(1000, 1380, 0.79), step(2500, 700, 0.9)] },
    { variant: "A", round: 2, steps: [step(1000, 1540, 0.86), step(2500, 660, 0.9, null)] },
    { variant: "A", round: 3, steps: [step(1000, 1520, 0.84), step(2500, 630, 0.91)] },
    { variant: "B", round: 3, steps: [step(1000, 1410, 0.81), step(2500, 655, 0.89)] },
  ];
  const rows = summarize(runs);
  const row = (rate: number, figure: string) => rows.find((r) => r.rate === rate && r.figure.startsWith(figure))!;

  it("gives each variant's median and range per rate, and B's median over A's", () => {
    expect(row(1000, "server CPU per order").a).toEqual({ median: 1520, min: 1500, max: 1540, n: 3 });
    expect(row(1000, "server CPU per order").b).toEqual({ median: 1400, min: 1380, max: 1410, n: 3 });
    expect(row(1000, "server CPU per order").ratio).toBeCloseTo(1400 / 1520, 6);
    expect(row(1000, "main thread cores").b?.median).toBe(0.8);
  });

  it("says the ranges are apart only when every B run lies beyond every A run, and judges nothing from one run", () => {
    expect(row(1000, "server CPU per order").ranges).toBe("apart");
    expect(row(2500, "server CPU per order").ranges).toBe("overlap");
    const one = summarize(runs.filter((r) => r.round === 1));
    expect(one.find((r) => r.rate === 1000 && r.figure.startsWith("server CPU per order"))!.ranges).toBe("too few runs");
  });

  it("leaves out a figure a run did not have (no order confirmed: no p99)", () => {
    expect(row(2500, "saga 202 → CONFIRMED p99").a?.n).toBe(2);
    expect(row(2500, "saga 202 → CONFIRMED p99").b?.n).toBe(3);
  });

  it("prints one block per rate, rates in order", () => {
    const text = formatSummary(rows);
    expect(text.indexOf("1000 orders/s")).toBeLessThan(text.indexOf("2500 orders/s"));
    expect(text).toMatch(/server CPU per order, µs\s+1,520 \[1,500–1,540\]\s+1,400 \[1,380–1,410\]\s+0\.921\s+apart/);
  });
});

describe("pairs", () => {
  it("splits KEY=VALUE at the first '=' and refuses anything else, naming the option", () => {
    expect(pairs("--b-set", ["threads.workers=[]", "a=b=c"])).toEqual([["threads.workers", "[]"], ["a", "b=c"]]);
    expect(() => pairs("--b-set", ["novalue"])).toThrow('--b-set: expected KEY=VALUE, got "novalue"');
    expect(() => pairs("--a-env", ["=1"])).toThrow("--a-env");
    expect(() => pairs("--a-env", ["BAD-NAME=1"], { test: /^[A-Za-z_][A-Za-z0-9_]*$/, what: "NAME=VALUE" })).toThrow('--a-env: expected NAME=VALUE, got "BAD-NAME=1"');
  });
});

describe("chanceApart", () => {
  it("is C(2n, n) / 2: how rarely equal variants still look apart", () => {
    expect(chanceApart(1)).toBe(1);
    expect(chanceApart(2)).toBe(3);
    expect(chanceApart(3)).toBe(10);
    expect(chanceApart(5)).toBe(126);
  });
});
