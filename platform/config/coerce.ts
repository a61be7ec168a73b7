import type { JsonNode } from "./keys.ts";

// Env vars and flags are strings; the schema wants numbers, arrays, booleans. Coercion is led by
// the target key's type. A value that does not convert is passed on unchanged, so the schema
// rejects it and the error shows exactly what the user typed.

const BOOLEANS: Readonly<Record<string, boolean>> = { true: true, "1": true, yes: true, on: true, false: false, "0": false, no: false, off: false };

function jsonOr(text: string, fallback: unknown): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

/** Converts `raw` to the type `node` describes, or returns it unchanged when it does not fit. */
export function coerce(node: JsonNode, raw: string): unknown {
  const text = raw.trim();
  switch (node.type) {
    case "integer":
    case "number": {
      const n = Number(text);
      return text !== "" && Number.isFinite(n) ? n : raw;
    }
    case "boolean":
      return BOOLEANS[text.toLowerCase()] ?? raw;
    case "array":
      // `[100,200]` (JSON) or `100,200` (a comma list, easier to type in a shell). A list of
      // lists takes `;` between its lists: `a,b;c` is [["a","b"],["c"]] (`a,b` one list of two).
      if (text.startsWith("[")) return jsonOr(text, raw);
      if (text === "") return [];
      return text.split(node.items?.type === "array" ? ";" : ",").map((part) => coerce(node.items ?? {}, part));
    case "object":
      return jsonOr(text, raw);
    default:
      return raw;
  }
}

/**
 * For values with no known type (below `modules.<name>`): JSON when it parses, else the string.
 * Each module's own schema validates the result later.
 */
export const coerceLoose = (raw: string): unknown => jsonOr(raw.trim(), raw);
