import { describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { allModules } from "../../modules.ts";
import { tempDataDir, testConfig } from "../../test/support/platform.ts";
import { createPlatform } from "../platform.ts";
import { planThreads } from "./host.ts";

const isBun = typeof (process.versions as Record<string, string | undefined>).bun === "string";

describe("threads.workers: which modules run on which thread", () => {
  it("keeps the modules not listed on the main thread", () => {
    const plan = planThreads([["payments", "inventory"], ["notifications"]], allModules);
    expect([...plan.main].sort()).toEqual(["analytics", "catalog", "customers", "order-history", "orders"]);
    expect(plan.groups).toEqual([["payments", "inventory"], ["notifications"]]);
  });

  it("names every problem: a module not hosted here, one listed twice, and calls across threads either way", () => {
    const hosted = allModules.filter((m) => m.name !== "analytics");
    let message = "";
    try {
      planThreads([["payments", "analytics", "orders"], ["payments"]], hosted);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('threads.workers[0]: module "analytics" is not hosted by this process');
    expect(message).toContain("threads.workers[1]: module payments is already on thread 0");
    // orders (thread 0) calls catalog and customers (main thread).
    expect(message).toContain(`module orders (thread 0) calls ${CatalogService.typeName} of module catalog (the main thread); calls between threads are not supported`);
    expect(message.split("\n")).toHaveLength(5);
  });

  it("allows a caller and its callee on one thread", () => {
    expect(planThreads([["catalog", "customers", "orders"]], allModules).main.has("orders")).toBe(false);
  });

  it("refuses to start threads without Bun, or without the binary's thread entry, before opening anything", async () => {
    const config = testConfig({ dataDir: tempDataDir(), threads: { workers: [["payments"]] } });
    await expect(createPlatform({ config, modules: allModules })).rejects.toThrow(isBun ? /threads\.workers is set, but this binary names no module-thread entry/ : /threads\.workers needs the Bun runtime/);
  });
});
