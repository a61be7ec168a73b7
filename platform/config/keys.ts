// Namespace import: under `bun --bun vitest`, zod's named `z` export resolves to undefined.
import * as z from "zod";
import { PlatformConfigSchema } from "./schema.ts";

// The schema is flattened once into a table of leaf keys. Help, env names, coercion and error
// messages all read this table, so adding a key to the schema is the only step needed.
// The walk goes over z.toJSONSchema's output rather than zod internals: that format is public
// and stable, and carries types, bounds and descriptions.

/** The part of JSON Schema that z.toJSONSchema emits for our schema. */
export interface JsonNode {
  readonly type?: string;
  readonly properties?: Readonly<Record<string, JsonNode>>;
  readonly items?: JsonNode;
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly minLength?: number;
  readonly minItems?: number;
  readonly description?: string;
}

/** One settable leaf of the configuration. */
export interface ConfigKey {
  /** Dotted name, e.g. `outbox.batchSize`. */
  readonly name: string;
  readonly segments: readonly string[];
  readonly node: JsonNode;
  /** What a valid value is, as a phrase: "an integer between 1 and 10000". */
  readonly expected: string;
  readonly default: unknown;
  readonly description: string;
  /** Env vars that set it; the last one wins. */
  readonly env: readonly string[];
  /** A record (`modules`): the keys below it are free-form and checked elsewhere. */
  readonly open: boolean;
}

// Names that hosting platforms (Fly, Heroku, Docker images) already set.
const ENV_ALIASES: Readonly<Record<string, readonly string[]>> = { port: ["PORT"], host: ["HOST"] };

/** `["outbox", "batchSize"]` -> `SELARAS_OUTBOX__BATCH_SIZE`. */
export function envName(segments: readonly string[]): string {
  const snake = segments.map((s) => s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase());
  return `SELARAS_${snake.join("__")}`;
}

const isSafe = (n: number | undefined): n is number => n !== undefined && Math.abs(n) < Number.MAX_SAFE_INTEGER;

function numberPhrase(n: JsonNode, plural: boolean): string {
  const base = n.type === "integer" ? "integer" : "number";
  const lo = isSafe(n.minimum) ? n.minimum : undefined;
  const hi = isSafe(n.maximum) ? n.maximum : undefined;
  let adjective = "";
  let range = "";
  if (lo !== undefined && hi !== undefined) range = ` between ${lo} and ${hi}`;
  else if (n.exclusiveMinimum === 0) adjective = "positive ";
  else if (lo === 0) adjective = "non-negative ";
  else if (lo !== undefined) range = ` >= ${lo}`;
  else if (hi !== undefined) range = ` <= ${hi}`;
  if (plural) return `${adjective}${base}s${range}`;
  const article = /^[aeiou]/.test(adjective || base) ? "an" : "a";
  return `${article} ${adjective}${base}${range}`;
}

/** A JSON Schema node as an English phrase, for errors and help. */
export function describeNode(n: JsonNode, plural = false): string {
  if (n.const !== undefined) return JSON.stringify(n.const);
  if (n.enum) return `one of ${n.enum.map((v) => JSON.stringify(v)).join(", ")}`;
  const noun = (one: string, many: string) => (plural ? many : one);
  switch (n.type) {
    case "integer":
    case "number":
      return numberPhrase(n, plural);
    case "array": {
      const of = `of ${describeNode(n.items ?? {}, true)}`;
      return n.minItems ? `${noun("a non-empty array", "non-empty arrays")} ${of}` : `${noun("an array", "arrays")} ${of}`;
    }
    case "string":
      return n.minLength ? noun("a non-empty string", "non-empty strings") : noun("a string", "strings");
    case "boolean":
      return noun("a boolean", "booleans");
    case "object":
      return noun("an object", "objects");
    default:
      return noun("a value", "values");
  }
}

function flatten(node: JsonNode, prefix: readonly string[], defaults: unknown, keys: ConfigKey[], groups: Set<string>): void {
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const segments = [...prefix, name];
    const dflt = (defaults as Record<string, unknown> | undefined)?.[name];
    if (child.properties) {
      groups.add(segments.join("."));
      flatten(child, segments, dflt, keys, groups);
      continue;
    }
    keys.push({
      name: segments.join("."),
      segments,
      node: child,
      expected: describeNode(child),
      default: dflt,
      description: child.description ?? "",
      env: [...(ENV_ALIASES[segments.join(".")] ?? []), envName(segments)],
      open: child.type === "object",
    });
  }
}

function buildTable(): { keys: readonly ConfigKey[]; groups: ReadonlySet<string> } {
  const keys: ConfigKey[] = [];
  const groups = new Set<string>();
  const json = z.toJSONSchema(PlatformConfigSchema, { io: "input" }) as JsonNode;
  // Defaults come from parsing `{}`: nested defaults then show their real values, not `{}`.
  flatten(json, [], PlatformConfigSchema.parse({}), keys, groups);
  return { keys, groups };
}

const TABLE = buildTable();

/** Every leaf key of `PlatformConfigSchema`, in schema order. */
export const CONFIG_KEYS: readonly ConfigKey[] = TABLE.keys;
const BY_NAME = new Map(CONFIG_KEYS.map((k) => [k.name, k]));

/** The nearest key at or above `path` (`bus.backoffMs.2` -> `bus.backoffMs`), and what is left below it. */
export function findKey(path: readonly PropertyKey[]): { key: ConfigKey; rest: string[] } | undefined {
  const segments = path.map(String);
  for (let n = segments.length; n > 0; n--) {
    const key = BY_NAME.get(segments.slice(0, n).join("."));
    if (key) return { key, rest: segments.slice(n) };
  }
  return undefined;
}

/** True for a group of keys such as `outbox`. */
export const isGroup = (path: readonly PropertyKey[]): boolean => TABLE.groups.has(path.map(String).join("."));
