// Usage: bun scripts/check-architecture.ts [root]
// The same check as test/architecture/architecture.test.ts, for CI logs and pre-commit hooks:
// one `file:line rule: message` per violation, exit code 1 if there is any.
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkArchitecture, formatViolation } from "../test/architecture/check.ts";

// Default to the repository this script lives in, so it works from any working directory.
const root = resolve(process.argv[2] ?? fileURLToPath(new URL("..", import.meta.url)));
const violations = checkArchitecture(root);

for (const v of violations) console.log(formatViolation(v));
if (violations.length > 0) {
  console.error(`${violations.length} architecture violation(s) in ${root}`);
  process.exit(1);
}
console.error(`architecture: no violations in ${root}`);
