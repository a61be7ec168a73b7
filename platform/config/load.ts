import { parseArgv } from "./argv.ts";
import { crossKeyProblems } from "./cross-checks.ts";
import { readEnv } from "./env.ts";
import { ConfigError, describeIssues } from "./errors.ts";
import { flatten, readConfigFile, type SourceResult } from "./file.ts";
import { isRecord, merge, originOf, type Assignment } from "./merge.ts";
import { PlatformConfigSchema, PROCESS_OVERRIDES, type PlatformConfig } from "./schema.ts";

/** Inputs of `loadConfig`, passed in so that nothing reads process globals. */
export interface LoadConfigOptions {
  /** Arguments after the script name: `process.argv.slice(2)`. */
  argv?: readonly string[];
  /** Usually `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Base for a relative `--config` path; defaults to the working directory. */
  cwd?: string;
}

/** What `loadConfig` returns. */
export interface LoadedConfig {
  /** The validated configuration. Only the defaults when `help` is true. */
  config: PlatformConfig;
  /** Positional arguments (a sub-command and its arguments), in order. */
  command: string[];
  /** `--help` or `-h` was given: print `configHelp()` and exit. */
  help: boolean;
}

const NO_FILE: SourceResult = { assignments: [], problems: [] };

/** Builds the configuration from defaults < file < env < flags; throws `ConfigError` listing every problem. */
export function loadConfig(opts: LoadConfigOptions = {}): LoadedConfig {
  const cli = parseArgv(opts.argv ?? []);
  // Help wins over a broken configuration: someone asking for help is often fixing one.
  if (cli.help) return { config: PlatformConfigSchema.parse({}), command: cli.command, help: true };

  const env = opts.env ?? {};
  const envFile = env.SELARAS_CONFIG || undefined;
  const file =
    cli.configFile !== undefined ? readConfigFile(cli.configFile, "--config", opts.cwd)
    : envFile !== undefined ? readConfigFile(envFile, "env SELARAS_CONFIG", opts.cwd)
    : NO_FILE;

  const shared = file.assignments;
  const later = [...readEnv(env), ...cli.assignments];
  // A process of a topology overrides some shared keys for itself: its section of
  // `topology.processes` slots in between the file's shared values and the environment.
  const base = merge([...shared, ...later]);
  const sections = processSections(base);
  const name = base.value.process;
  const own = typeof name === "string" ? (sections.get(name) ?? []) : [];
  const { value, origins } = merge([...shared, ...own, ...later]);
  const parsed = PlatformConfigSchema.safeParse(value);
  const problems = [...file.problems, ...cli.problems, ...(parsed.success ? [] : describeIssues(parsed.error.issues, origins))];
  if (parsed.success) {
    for (const p of crossKeyProblems(parsed.data)) {
      const origin = originOf(origins, p.key.split("."));
      problems.push(`${p.key}: ${p.message}${origin ? ` (from ${origin.from})` : ""}`);
    }
  }
  // The other processes' overrides are checked too, so a typo fails every process at start.
  for (const [other, assignments] of sections) {
    if (other === name) continue;
    const m = merge([...shared, ...assignments, ...later]);
    const r = PlatformConfigSchema.safeParse(m.value);
    if (!r.success) problems.push(...describeIssues(r.error.issues, m.origins).filter((l) => l.endsWith(`topology.processes.${other})`)));
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError([...new Set(problems)]);
  return { config: parsed.data, command: cli.command, help: false };
}

/** Each process's overrides (`topology.processes.<name>.port`...) as assignments to the shared keys. */
function processSections(merged: ReturnType<typeof merge>): Map<string, Assignment[]> {
  const out = new Map<string, Assignment[]>();
  const topology = merged.value.topology;
  const processes = isRecord(topology) ? topology.processes : undefined;
  if (!isRecord(processes)) return out;
  for (const [name, entry] of Object.entries(processes)) {
    if (!isRecord(entry)) continue;
    const from = `${originOf(merged.origins, ["topology", "processes", name])?.from ?? "config"}: topology.processes.${name}`;
    const overrides = Object.fromEntries(PROCESS_OVERRIDES.filter((k) => Object.hasOwn(entry, k)).map((k) => [k, entry[k]]));
    const assignments: Assignment[] = [];
    flatten(overrides, [], from, assignments);
    out.set(name, assignments);
  }
  return out;
}
