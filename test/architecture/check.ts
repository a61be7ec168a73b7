import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, posix } from "node:path";
import { parseSource, type ImportRef } from "./parse.ts";

/** Every rule the checker enforces; each has a fixture under `fixtures/<rule>/` proving it fires. */
export const RULES = [
  "module-imports-module",
  "platform-imports-module",
  "domain-imports-io",
  "module-reads-env",
  "module-imports-outside",
] as const;

export type RuleId = (typeof RULES)[number];

/** One broken boundary: `file` is relative to the checked root, posix-style; `line` is 1-based. */
export interface Violation {
  readonly file: string;
  readonly line: number;
  readonly rule: RuleId;
  readonly message: string;
}

/**
 * Checks every source file under `root` against the module boundaries of STYLE.md.
 *
 * @example
 * checkArchitecture(process.cwd()).map(formatViolation).forEach((l) => console.log(l));
 */
export function checkArchitecture(root: string): Violation[] {
  return sourceFiles(root).flatMap((file) => checkFile(file, readFileSync(join(root, file), "utf8")));
}

/** `modules/orders/x.ts:12 module-imports-module: ...`, the form editors and CI logs link from. */
export function formatViolation(v: Violation): string {
  return `${v.file}:${v.line} ${v.rule}: ${v.message}`;
}

/** Checks one file given its root-relative posix path and its text; pure, so tests can feed it strings. */
export function checkFile(file: string, text: string): Violation[] {
  const module = moduleOf(file);
  const inPlatform = within(file, "platform");
  if (!module && !inPlatform) return []; // main.ts, gen/, scripts/, test/ may import anything
  const { imports, envReads } = parseSource(file, text);
  const found: Violation[] = [];
  const report = (line: number, rule: RuleId, message: string) => found.push({ file, line, rule, message });

  for (const ref of imports) {
    const target = resolve(file, ref);
    if (inPlatform && target && (within(target, "modules") || isMainFile(target))) {
      report(ref.line, "platform-imports-module", `imports "${ref.specifier}"; the platform must not depend on modules or on main.ts`);
    }
    if (!module) continue;
    const other = target && (moduleOf(target) ?? migrationsOf(target));
    if (other && other !== module) {
      report(ref.line, "module-imports-module", `imports "${ref.specifier}" of module "${other}"; reach it through its generated client or its events`);
    } else if (target && !other && !allowedOutside(file).some((dir) => within(target, dir))) {
      report(ref.line, "module-imports-outside", `imports "${ref.specifier}" (${target}), outside modules/${module}, gen/ and platform/`);
    }
    const io = within(file, `modules/${module}/domain`) && ioReason(module, ref.specifier, target);
    if (io) report(ref.line, "domain-imports-io", `imports "${ref.specifier}", ${io}; the domain stays pure`);
  }
  if (module) {
    for (const read of envReads) {
      report(read.line, "module-reads-env", `reads the environment (${read.expression}); take a validated config slice from the manifest instead`);
    }
  }
  return found.sort((a, b) => a.line - b.line);
}

/** Where a module file may import from outside its own folder: contracts, the platform, and — for tests only — the shared test helpers. */
function allowedOutside(file: string): string[] {
  return /\.test\.[cm]?[jt]sx?$/.test(file) ? ["gen", "platform", "test/support"] : ["gen", "platform"];
}

// Libraries that do I/O or belong to an adapter (storage, HTTP, RPC, bus, protobuf).
// `ws` and `undici` are listed because Bun reports them as built-ins and Node does not:
// naming them here keeps the verdict the same on both runtimes.
const IO_PACKAGES = ["bun", "better-sqlite3", "postgres", "nats", "ws", "undici"];
const IO_PREFIXES = ["drizzle-orm", "hono", "@hono/", "@connectrpc/", "@nats-io/", "@bufbuild/protobuf", "node:", "bun:"];
const NODE_BUILTINS = builtinModules.filter((m) => !m.includes(":"));

function ioReason(module: string, specifier: string, target: string | undefined): string | undefined {
  if (target) {
    if (within(target, "gen")) return "generated code (protobuf stops at the adapter)";
    if (within(target, "platform")) return "the platform";
    const layer = within(target, `modules/${module}`) && !within(target, `modules/${module}/domain`);
    return layer ? "a layer of its module outside domain/" : undefined;
  }
  const isPackage = (name: string) => specifier === name || specifier.startsWith(`${name}/`);
  if (IO_PACKAGES.some(isPackage) || IO_PREFIXES.some((p) => specifier.startsWith(p))) return "an I/O or adapter library";
  return NODE_BUILTINS.some(isPackage) ? "a runtime built-in" : undefined;
}

/** Root-relative target of a path specifier; undefined for package names, which have no place in the tree. */
function resolve(file: string, ref: ImportRef): string | undefined {
  const spec = ref.specifier;
  if (spec.startsWith("/")) return spec; // absolute: never inside the project's allowed folders
  if (spec !== "." && spec !== ".." && !spec.startsWith("./") && !spec.startsWith("../")) return undefined;
  return posix.normalize(posix.join(posix.dirname(file), spec)); // may start with "../": outside the root
}

// The module a path belongs to: `modules/orders/...`, `modules/orders` and `modules/orders.ts` all
// name "orders"; so do `gen/migrations/orders.ts` (its embedded migrations) and `gen/migrations/orders`.
const ownerIn = (dir: string) => (path: string) =>
  new RegExp(`^${dir}/([^/.]+)(?:\\.[cm]?[jt]sx?)?(?:/|$)`).exec(path)?.[1];
const moduleOf = ownerIn("modules");
const migrationsOf = ownerIn("gen/migrations");

function isMainFile(path: string): boolean {
  return /^main(?:\.[cm]?[jt]sx?)?$/.test(path);
}

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

// Skipped: dependencies, runtime data, build output, and the fixtures. No rule matches the fixtures'
// paths (test/...) anyway; skipping them keeps the real scan from parsing files that lie on purpose.
const SKIP_PATHS = new Set(["data", "dist", "test/architecture/fixtures"]);
const SOURCE_FILE = /\.(?:[cm]?[jt]s|[jt]sx)$/;

function sourceFiles(root: string, dir = ""): string[] {
  const entries = readdirSync(join(root, dir), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)); // same order on every OS and runtime
  return entries.flatMap((entry) => {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      const skip = entry.name === "node_modules" || entry.name.startsWith(".") || SKIP_PATHS.has(path);
      return skip ? [] : sourceFiles(root, path);
    }
    return entry.isFile() && SOURCE_FILE.test(entry.name) ? [path] : [];
  });
}
