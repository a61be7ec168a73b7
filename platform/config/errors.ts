import type * as z from "zod";
import { findKey, isGroup } from "./keys.ts";
import { originOf, type Assignment } from "./merge.ts";

/** Thrown by `loadConfig`: `problems` holds every problem found, one line each (also the message). */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join("\n"));
    this.problems = problems;
  }
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

const source = (origin: Assignment | undefined) => (origin ? ` (from ${origin.from})` : "");

// zod's own messages ("Too small: expected number to be >0") name neither the key nor the
// source. Each issue is rewritten from the key table instead: the key, what it accepts, the
// value as the user wrote it, and where it was written. Messages are deduplicated because an
// array with two bad items yields two issues for the same key.
/** Turns validation issues into `key: expected ..., got ... (from ...)` lines. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], origins: ReadonlyMap<string, Assignment>): string[] {
  const lines = new Set<string>();
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        lines.add(`${path.map(String).join(".")}: unknown key${source(originOf(origins, path))}`);
      }
      continue;
    }
    const found = findKey(issue.path);
    const origin = originOf(origins, issue.path);
    // Below a free-form key (`topology.processes.<name>.url`) the table knows no more: the
    // schema's own message, which says what is expected there.
    if (found && found.key.open && found.rest.length > 0) {
      // A bad record key: zod says only "Invalid key in record"; the key schema says what is wrong.
      const message = issue.code === "invalid_key" ? (issue.issues[0]?.message ?? issue.message) : issue.message;
      lines.add(`${issue.path.map(String).join(".")}: ${message}${source(origin)}`);
      continue;
    }
    const name = found ? found.key.name : issue.path.map(String).join(".");
    const expected = found ? found.key.expected : isGroup(issue.path) ? "an object" : issue.message;
    const got = origin ? `, got ${show(origin.raw)}` : "";
    lines.add(`${name}: expected ${expected}${got}${source(origin)}`);
  }
  return [...lines];
}
