import { describe, expect, it } from "vitest";
import * as z from "zod";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { OrderService } from "../../gen/orders/v1/orders_pb.ts";
import { PlatformConfigSchema } from "../config/schema.ts";
import { defineModule, type ModuleManifest } from "../module.ts";
import { planProcess, TopologyError } from "./plan.ts";

// Manifests shaped like the real ones (services, dependsOn), with nothing to start.
const fake = (name: string, services: ModuleManifest["services"] = [], dependsOn: ModuleManifest["dependsOn"] = []) =>
  defineModule({ name, migrations: { sqlite: [] }, services, dependsOn, config: z.object({ n: z.int().optional() }).strict(), start: () => ({}) });
const catalog = fake("catalog", [CatalogService]);
const customers = fake("customers", [CustomerService]);
const orders = fake("orders", [OrderService], [CatalogService, CustomerService]);
const history = fake("order-history");
const known = [catalog, customers, orders, history];

const split = {
  bus: { kind: "nats" },
  topology: {
    processes: {
      core: { modules: ["catalog", "customers"], url: "http://core:3000" },
      orders: { modules: ["orders"], url: "http://orders:3000" },
      history: { modules: ["order-history"] },
    },
  },
};
const config = (value: object) => PlatformConfigSchema.parse(value);

/** The problems `planProcess` reports, or fails the test when it accepts the topology. */
function problems(value: object): readonly string[] {
  try {
    planProcess(config(value), known);
  } catch (e) {
    expect(e).toBeInstanceOf(TopologyError);
    return (e as TopologyError).problems;
  }
  throw new Error("expected planProcess to reject the topology");
}

describe("planProcess", () => {
  it("runs every module in one process when there is no topology", () => {
    const plan = planProcess(config({}), known);
    expect(plan.process).toBeUndefined();
    expect(plan.modules).toBe(known);
    expect(plan.remotes).toEqual([]);
  });

  it("gives a process its modules and routes the services of the others to their url", () => {
    const plan = planProcess(config({ ...split, process: "orders", modules: { orders: { n: 1 }, catalog: { n: 2 } } }), known);
    expect(plan.process).toBe("orders");
    expect(plan.modules.map((m) => m.name)).toEqual(["orders"]);
    expect(plan.remotes).toEqual([{ name: "core", url: "http://core:3000", services: [CatalogService, CustomerService] }]);
    expect(plan.config.modules).toEqual({ orders: { n: 1 } }); // catalog's slice belongs to core
    expect(planProcess(config({ ...split, process: "history" }), known).modules.map((m) => m.name)).toEqual(["order-history"]);
  });

  it("accepts a one-process topology on the embedded bus", () => {
    const plan = planProcess(config({ process: "all", topology: { processes: { all: { modules: known.map((m) => m.name) } } } }), known);
    expect(plan.modules).toEqual(known);
  });

  it("rejects --process without a topology", () => {
    expect(problems({ process: "orders" })).toEqual([expect.stringMatching(/process "orders" was chosen .* no topology\.processes/)]);
  });

  it("rejects a topology without --process", () => {
    expect(problems(split)).toEqual([expect.stringMatching(/processes core, orders, history\): choose the process to run with --process NAME/)]);
  });

  it("rejects an unknown process name", () => {
    expect(problems({ ...split, process: "edge" })).toEqual([`process "edge" (--process) is not in topology.processes (core, orders, history)`]);
  });

  it("rejects an unknown module, a module hosted twice and a module hosted nowhere, all at once", () => {
    const p = problems({
      bus: { kind: "nats" },
      process: "a",
      topology: { processes: { a: { modules: ["catalog", "customers", "orders", "shipping"], url: "http://a" }, b: { modules: ["orders", "orders"] } } },
    });
    expect(p).toEqual([
      `topology.processes.a.modules: unknown module "shipping" (this binary has catalog, customers, orders, order-history)`,
      "module orders is hosted twice: by process a and by process b",
      "module order-history is hosted by no process: add it to the modules of one of topology.processes",
    ]);
    expect(problems({ bus: { kind: "nats" }, process: "a", topology: { processes: { a: { modules: ["catalog", "customers", "orders", "order-history", "catalog"] } } } })).toEqual([
      "topology.processes.a.modules lists module catalog twice",
    ]);
  });

  it("rejects a process without a url when another process calls its modules, naming caller and service", () => {
    const p = problems({ ...split, process: "orders", topology: { processes: { ...split.topology.processes, core: { modules: ["catalog", "customers"] } } } });
    expect(p).toEqual([
      "process core has no url, but module orders (process orders) calls catalog.v1.CatalogService of its module catalog: set topology.processes.core.url to the address the other processes reach it at",
      "process core has no url, but module orders (process orders) calls customers.v1.CustomerService of its module customers: set topology.processes.core.url to the address the other processes reach it at",
    ]);
  });

  it("rejects a split topology on the embedded bus", () => {
    expect(problems({ ...split, bus: { kind: "embedded" }, process: "orders" })).toEqual([
      `bus.kind is "embedded", a log inside one process's dataDir: events cannot travel between the 3 processes (core, orders, history); set bus.kind = "nats"`,
    ]);
  });

  it("rejects a config slice for a module the binary does not have", () => {
    expect(problems({ ...split, process: "orders", modules: { shiping: {} } })).toEqual([expect.stringMatching(/^modules\.shiping: no such module/)]);
  });

  it("rejects a Postgres URL for a module the binary does not have, with or without a topology", () => {
    const storage = { kind: "postgres", postgres: { moduleUrls: { ordrs: "postgres://selaras_orders@db/orders" } } };
    expect(problems({ ...split, process: "orders", storage })).toEqual([expect.stringMatching(/^storage\.postgres\.moduleUrls\.ordrs: no such module/)]);
    expect(problems({ storage })).toEqual([expect.stringMatching(/^storage\.postgres\.moduleUrls\.ordrs: no such module/)]);
  });

  it("rejects a consumer linger for a module the binary does not have, with or without a topology", () => {
    const bus = { kind: "nats", lingerMs: { "order-histroy": { projection: 20 } } };
    expect(problems({ ...split, process: "orders", bus })).toEqual([expect.stringMatching(/^bus\.lingerMs\.order-histroy: no such module/)]);
    expect(problems({ bus: { lingerMs: bus.lingerMs } })).toEqual([expect.stringMatching(/^bus\.lingerMs\.order-histroy: no such module/)]);
  });

  it("rejects a dependency no module implements", () => {
    const lonely = fake("lonely", [], [OrderService]);
    let err: unknown;
    try {
      planProcess(config({ process: "a", topology: { processes: { a: { modules: ["catalog", "lonely"] } } } }), [catalog, lonely]);
    } catch (e) {
      err = e;
    }
    expect((err as TopologyError).problems).toEqual(["module lonely calls orders.v1.OrderService, which no module of this binary implements"]);
  });
});
