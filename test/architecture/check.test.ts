import { describe, expect, it } from "vitest";
import { checkFile, formatViolation } from "./check.ts";

// The fixtures prove each rule fires once; these cases prove every way of writing an import,
// or of reading the environment, is seen, and that allowed code stays quiet.
const rulesOf = (file: string, text: string) => checkFile(file, text).map((v) => `${v.line} ${v.rule}`);

describe("import forms", () => {
  const command = "modules/orders/commands/x.ts";
  it.each([
    ['import { a } from "../../catalog/index.ts";'],
    ['import type { A } from "../../catalog/index.ts";'],
    ['import "../../catalog/index.ts";'],
    ['export { a } from "../../catalog/index.ts";'],
    ['export * from "../../catalog";'],
    ['const m = await import("../../catalog/index.ts");'],
    ['const m = require("../../catalog/db/store");'],
    ['import m = require("../../catalog/index.ts");'],
    ['type M = typeof import("../../catalog/index.ts");'],
    ['vi.mock("../../catalog/index.ts");'],
    ['import { up } from "../../../gen/migrations/catalog.ts";'],
  ])("sees %s", (statement) => {
    expect(rulesOf(command, `// line 1\n${statement}\n`)).toEqual(["2 module-imports-module"]);
  });

  it("lets a module's tests, and only its tests, use the shared test helpers", () => {
    const statement = 'import { waitFor } from "../../test/support/platform.ts";';
    expect(rulesOf("modules/orders/orders.contract.test.ts", statement)).toEqual([]);
    expect(rulesOf("modules/orders/rpc.ts", statement)).toEqual(["1 module-imports-outside"]);
  });

  it("reports the line of the specifier in a multi-line import", () => {
    expect(rulesOf(command, 'import {\n  a,\n  b,\n} from "../../catalog/index.ts";')).toEqual(["4 module-imports-module"]);
  });

  it("ignores import-like text in strings and comments", () => {
    const text = '// import x from "../../catalog/index.ts"\nconst s = \'import("../../catalog/index.ts")\';';
    expect(rulesOf(command, text)).toEqual([]);
  });

  it("allows a module its own files, its own migrations, gen/ and platform/", () => {
    const text = [
      'import "../domain/order.ts";',
      'import "../index.ts";',
      'import "../../../gen/migrations/orders.ts";',
      'import "../../../gen/orders/v1/orders_pb.ts";',
      'import "../../../platform/module.ts";',
      'import { eq } from "drizzle-orm";',
    ].join("\n");
    expect(rulesOf(command, text)).toEqual([]);
  });

  it("treats paths that leave the module as outside, even past the root", () => {
    expect(rulesOf(command, 'import "../../../test/helpers.ts";\nimport "../../../../elsewhere.ts";')).toEqual([
      "1 module-imports-outside",
      "2 module-imports-outside",
    ]);
  });
});

describe("domain purity", () => {
  const domain = "modules/orders/domain/order.ts";
  it.each([
    "fs",
    "node:crypto",
    "fs/promises",
    "bun",
    "bun:sqlite",
    "better-sqlite3",
    "postgres",
    "nats",
    "@nats-io/jetstream",
    "drizzle-orm/sqlite-core",
    "hono/http-exception",
    "@connectrpc/connect",
    "@bufbuild/protobuf/wkt",
    "../../../gen/orders/v1/orders_pb.ts",
    "../../../platform/ids.ts",
    "../db/store.ts",
    "../rpc.ts",
    "../events/order-placed.ts",
    "../commands/place-order.ts",
    "../queries/get-order.ts",
    "../index.ts",
  ])("rejects %s", (specifier) => {
    expect(rulesOf(domain, `import "${specifier}";`)).toEqual(["1 domain-imports-io"]);
  });

  it("allows sibling domain files and pure libraries", () => {
    expect(rulesOf(domain, 'import "./money.ts";\nimport "./rules/credit.ts";\nimport { z } from "zod";')).toEqual([]);
  });
});

describe("environment reads", () => {
  it.each([
    "const u = process.env.DB_URL;",
    'const u = process["env"].DB_URL;',
    "const u = Bun.env.DB_URL;",
    "const u = import.meta.env.DB_URL;",
    "const u = globalThis.process.env.DB_URL;",
    "const { env } = process;",
    'import { env } from "node:process";',
  ])("sees %s in a module", (statement) => {
    expect(rulesOf("modules/orders/db/connect.ts", statement)).toEqual(["1 module-reads-env"]);
  });

  it("leaves the platform and main.ts free to read it", () => {
    expect(rulesOf("platform/config.ts", "process.env.PORT;")).toEqual([]);
    expect(rulesOf("main.ts", "process.env.PORT;")).toEqual([]);
  });
});

describe("platform", () => {
  it("must not import modules or main.ts", () => {
    const text = 'import "../modules/orders/index.ts";\nimport "../main.ts";\nimport "../gen/orders/v1/orders_pb.ts";';
    expect(rulesOf("platform/http.ts", text)).toEqual(["1 platform-imports-module", "2 platform-imports-module"]);
  });
});

it("formats a violation as file:line rule: message", () => {
  const [v] = checkFile("modules/orders/x.ts", '\nimport "../catalog/index.ts";');
  expect(v && formatViolation(v)).toMatch(/^modules\/orders\/x\.ts:2 module-imports-module: .+/);
});
