// Builds better-sqlite3's native addon when it is missing.
//
// Why: bun does not run better-sqlite3's own install script (it is deliberately not in
// trustedDependencies), because that script downloads a prebuilt binary — which fails offline —
// and then falls back to `bunx node-gyp@latest`, which breaks on Node 20. We build from source
// with the pinned node-gyp instead, against the local Node headers when they exist.
// better-sqlite3 is only used when the suite runs on Node; Bun uses bun:sqlite.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const require = createRequire(import.meta.url);
const pkgDir = join(process.cwd(), "node_modules", "better-sqlite3");
if (!existsSync(join(pkgDir, "package.json"))) {
  console.log("[postinstall] better-sqlite3 not installed (optional); skipping addon build");
  process.exit(0);
}
const addon = join(pkgDir, "build", "Release", "better_sqlite3.node");
if (existsSync(addon)) process.exit(0);

const nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
const args = [nodeGyp, "rebuild", "--release"];
if (existsSync("/usr/include/node/node.h")) args.push("--nodedir=/usr");
console.log(`[postinstall] building better-sqlite3 addon (about a minute): node ${args.slice(1).join(" ")}`);
const result = spawnSync("node", args, { cwd: pkgDir, stdio: "inherit" });
if (result.status !== 0 || !existsSync(addon)) {
  console.error("[postinstall] better-sqlite3 build failed; the Node half of the test suite needs it");
  process.exit(1);
}
