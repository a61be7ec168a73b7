import { parseArgv } from "./argv.ts";
import { readEnv } from "./env.ts";
import { ConfigError, describeIssues } from "./errors.ts";
import { readConfigFile, type SourceResult } from "./file.ts";
import { merge } from "./merge.ts";
import { PlatformConfigSchema, type PlatformConfig } from "./schema.ts";

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

  const { value, origins } = merge([...file.assignments, ...readEnv(env), ...cli.assignments]);
  const parsed = PlatformConfigSchema.safeParse(value);
  const problems = [...file.problems, ...cli.problems, ...(parsed.success ? [] : describeIssues(parsed.error.issues, origins))];
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return { config: parsed.data, command: cli.command, help: false };
}
