import type { PlatformConfig } from "./schema.ts";

/** Settings that are each valid alone but cannot work together; `key` is the one to change. */
export interface CrossKeyProblem {
  readonly key: string;
  readonly message: string;
}

/**
 * What no single key's schema can see: settings that contradict each other. `loadConfig` reports
 * them with the value's source; `createPlatform` refuses them too (a config built in code).
 * @example crossKeyProblems(PlatformConfigSchema.parse({ outbox: { relay: "cdc" } })) // [{ key: "outbox.relay", … }]
 */
export function crossKeyProblems(config: PlatformConfig): CrossKeyProblem[] {
  const problems: CrossKeyProblem[] = [];
  if (config.outbox.relay === "cdc" && config.storage.kind !== "postgres") {
    problems.push({
      key: "outbox.relay",
      message: `"cdc" streams the outbox from the Postgres WAL, but storage.kind is "${config.storage.kind}" and embedded SQLite has no WAL to decode; set storage.kind = "postgres" or outbox.relay = "poll"`,
    });
  }
  return problems;
}
