import { coerce } from "./coerce.ts";
import { CONFIG_KEYS } from "./keys.ts";
import type { Assignment } from "./merge.ts";

/**
 * The values set by environment variables: `PORT`, `HOST` and `SELARAS_<KEY>` for every key.
 * Walks the known keys rather than the environment, so unrelated `SELARAS_*` variables (such as
 * `SELARAS_CONFIG`) are ignored; a known one with a bad value fails validation like any source.
 */
export function readEnv(env: Readonly<Record<string, string | undefined>>): Assignment[] {
  const out: Assignment[] = [];
  for (const key of CONFIG_KEYS) {
    for (const name of key.env) {
      const raw = env[name];
      if (raw !== undefined) out.push({ path: key.segments, value: coerce(key.node, raw), raw, from: `env ${name}` });
    }
  }
  return out;
}
