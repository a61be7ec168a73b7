import { describe, expect, it } from "vitest";
import { cpuPerOrder } from "./metrics.ts";

describe("cpuPerOrder", () => {
  it("adds the windows' CPU seconds and divides by the orders, with Postgres and NATS added when measured", () => {
    expect(cpuPerOrder([{ serverSeconds: 1.5, serviceSeconds: null }, { serverSeconds: 0.5, serviceSeconds: null }], 1000)).toEqual({ serverMs: 2, withServicesMs: null });
    expect(cpuPerOrder([{ serverSeconds: 3, serviceSeconds: 1 }, { serverSeconds: 1, serviceSeconds: 0.5 }], 2000)).toEqual({ serverMs: 2, withServicesMs: 2.75 });
  });

  it("has no figure when a window could not be measured, or no order was placed", () => {
    expect(cpuPerOrder([{ serverSeconds: 1, serviceSeconds: 1 }, { serverSeconds: null, serviceSeconds: 1 }], 100)).toEqual({ serverMs: null, withServicesMs: null });
    expect(cpuPerOrder([{ serverSeconds: 1, serviceSeconds: null }], 0).serverMs).toBeNull();
  });
});
