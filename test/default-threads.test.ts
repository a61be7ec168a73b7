import { describe, expect, it } from "vitest";
import { withDefaultThreads } from "../main.ts";
import { allModules } from "../modules.ts";
import { tempDataDir, testConfig } from "./support/platform.ts";

const THREADED = ["payments", "inventory", "notifications"];

describe("the binary's threads.workers when the configuration leaves it unset", () => {
  const base = testConfig({ dataDir: tempDataDir() });
  const unset = { ...base, threads: {} };

  it("puts payments, inventory and notifications on one thread in one embedded process on 2+ cores; order-history and analytics stay with orders", () => {
    expect(withDefaultThreads(unset, allModules, 2).threads.workers).toEqual([THREADED]);
  });

  it("takes only those this process hosts; without any of the saga's, its read side (the one-hop bench's four modules)", () => {
    const some = allModules.filter((m) => ["catalog", "customers", "orders", "inventory", "analytics"].includes(m.name));
    expect(withDefaultThreads(unset, some, 2).threads.workers).toEqual([["inventory"]]);
    const four = allModules.filter((m) => ["catalog", "customers", "orders", "order-history"].includes(m.name));
    expect(withDefaultThreads(unset, four, 2).threads.workers).toEqual([["order-history"]]);
    const none = allModules.filter((m) => ["catalog", "customers"].includes(m.name));
    expect(withDefaultThreads(unset, none, 2).threads.workers).toEqual([]);
  });

  it("keeps every module on the main thread on one core, in a topology's process, and on NATS", () => {
    expect(withDefaultThreads(unset, allModules, 1).threads.workers).toEqual([]);
    expect(withDefaultThreads({ ...unset, process: "all" }, allModules, 2).threads.workers).toEqual([]);
    expect(withDefaultThreads({ ...unset, bus: { ...unset.bus, kind: "nats" } }, allModules, 2).threads.workers).toEqual([]);
  });

  it("leaves a value the configuration gives alone, [] included", () => {
    expect(withDefaultThreads({ ...base, threads: { workers: [] } }, allModules, 2).threads.workers).toEqual([]);
    expect(withDefaultThreads({ ...base, threads: { workers: [["payments"]] } }, allModules, 2).threads.workers).toEqual([["payments"]]);
  });
});
