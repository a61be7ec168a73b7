import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkArchitecture, formatViolation, RULES, type RuleId } from "./check.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

// Where each fixture breaks its rule; the line is not 1 on purpose, to prove line numbers are real.
const expected: Record<RuleId, { file: string; line: number }> = {
  "module-imports-module": { file: "modules/orders/commands/place-order.ts", line: 2 },
  "platform-imports-module": { file: "platform/http/server.ts", line: 3 },
  "domain-imports-io": { file: "modules/orders/domain/order.ts", line: 3 },
  "module-reads-env": { file: "modules/orders/db/connect.ts", line: 3 },
  "module-imports-outside": { file: "modules/orders/rpc.ts", line: 2 },
};

describe("architecture", () => {
  it("the project keeps its module boundaries", () => {
    const violations = checkArchitecture(repoRoot).map(formatViolation);
    // Compared as text so a failure prints `file:line rule: message`, one per line.
    expect(violations.join("\n")).toBe("");
  });
});

describe("the checker itself", () => {
  it("has one fixture per rule, plus the clean one", () => {
    const fixtures = readdirSync(fixture("")).sort();
    expect(fixtures).toEqual([...RULES, "clean"].sort());
  });

  it.each(RULES)("catches %s in its fixture, at the right file and line", (rule) => {
    const violations = checkArchitecture(fixture(rule));
    expect(violations.map(({ file, line, rule }) => ({ file, line, rule }))).toEqual([{ ...expected[rule], rule }]);
    expect(violations[0]?.message).not.toBe("");
  });

  it("finds nothing wrong in the clean fixture", () => {
    expect(checkArchitecture(fixture("clean")).map(formatViolation)).toEqual([]);
  });
});
