import { readFileSync } from "node:fs";
import { extname, resolve } from "node:path";
import { isGroup } from "./keys.ts";
import { isRecord, type Assignment } from "./merge.ts";

/** What a source yields: values to merge, and problems that are not about a single value. */
export interface SourceResult {
  readonly assignments: Assignment[];
  readonly problems: string[];
}

type Parsed = { ok: true; value: unknown } | { ok: false; problem: string };

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function parse(text: string, file: string): Parsed {
  try {
    if (extname(file).toLowerCase() !== ".toml") return { ok: true, value: JSON.parse(text) };
    // TOML comes free with Bun; on Node it would need a dependency for a convenience.
    if (typeof Bun === "undefined") return { ok: false, problem: "TOML needs the Bun runtime (Bun.TOML.parse); on Node use a .json file" };
    return { ok: true, value: Bun.TOML.parse(text) };
  } catch (e) {
    const format = extname(file).toLowerCase() === ".toml" ? "TOML" : "JSON";
    return { ok: false, problem: `invalid ${format}: ${message(e)}` };
  }
}

// Descends only into known groups (`outbox`, `bus`...): anything else is one value, so an unknown
// key is reported once, by name, and `modules` keeps its free-form content whole.
/** Turns a nested object into one assignment per key (groups are descended into), all `from` one source. */
export function flatten(obj: Record<string, unknown>, prefix: readonly string[], from: string, out: Assignment[]): void {
  for (const [key, value] of Object.entries(obj)) {
    const path = [...prefix, key];
    if (isGroup(path) && isRecord(value)) flatten(value, path, from, out);
    else out.push({ path, value, raw: value, from });
  }
}

/**
 * Reads a JSON (or, under Bun, TOML) config file. `via` says how it was chosen (`--config`,
 * `env SELARAS_CONFIG`); `file` is shown as given and resolved against `cwd`.
 */
export function readConfigFile(file: string, via: string, cwd?: string): SourceResult {
  const path = cwd === undefined ? resolve(file) : resolve(cwd, file);
  const fail = (problem: string): SourceResult => ({ assignments: [], problems: [`config file ${file}: ${problem} (from ${via})`] });
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === "ENOENT" ? `not found at ${path}` : `cannot read ${path}: ${message(e)}`);
  }
  const parsed = parse(text, file);
  if (!parsed.ok) return fail(parsed.problem);
  if (!isRecord(parsed.value)) return fail("expected an object at the top level");
  const assignments: Assignment[] = [];
  flatten(parsed.value, [], `file ${file}`, assignments);
  return { assignments, problems: [] };
}
