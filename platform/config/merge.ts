// Every source (file, env, flags) is turned into a list of assignments. Merging them in order
// gives "later wins", and remembering the last assignment per path lets each validation error
// say where its bad value came from.

/** One value set by one source. */
export interface Assignment {
  readonly path: readonly string[];
  readonly value: unknown;
  /** What the user wrote (the string before coercion), for error messages. */
  readonly raw: unknown;
  /** Where it came from: `file ./x.json`, `env PORT`, `--port`, `--set`. */
  readonly from: string;
}

export interface Merged {
  readonly value: Record<string, unknown>;
  readonly origins: ReadonlyMap<string, Assignment>;
}

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

// defineProperty, not `obj[k] = v`: a key named `__proto__` (from a file or --set) must become
// an ordinary own key that validation rejects, not replace the object's prototype.
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const segment of path.slice(0, -1)) {
    const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
    if (isRecord(next)) {
      node = next;
    } else {
      const child: Record<string, unknown> = {};
      define(node, segment, child);
      node = child;
    }
  }
  define(node, path[path.length - 1]!, value);
}

/** Applies the assignments in order; a later one overrides an earlier one. */
export function merge(assignments: readonly Assignment[]): Merged {
  const value: Record<string, unknown> = {};
  const origins = new Map<string, Assignment>();
  for (const a of assignments) {
    setPath(value, a.path, a.value);
    const name = a.path.join(".");
    // A whole value replaces whatever was set below it, so those origins are stale.
    for (const other of [...origins.keys()]) if (other.startsWith(`${name}.`)) origins.delete(other);
    origins.set(name, a);
  }
  return { value, origins };
}

/** The assignment that set `path` or the nearest value above it. */
export function originOf(origins: ReadonlyMap<string, Assignment>, path: readonly PropertyKey[]): Assignment | undefined {
  const segments = path.map(String);
  for (let n = segments.length; n > 0; n--) {
    const found = origins.get(segments.slice(0, n).join("."));
    if (found) return found;
  }
  return undefined;
}
