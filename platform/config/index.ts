/**
 * Platform configuration: one zod-validated object built from defaults < config file < env < flags.
 * @module
 */

/**
 * The zod schema of the whole configuration; every key carries a description shown by `--help`.
 * @example
 * const config = PlatformConfigSchema.parse({ port: 0 }); // every other key takes its default
 */
export { PlatformConfigSchema } from "./schema.ts";

/**
 * The validated configuration, every default filled in.
 * @example
 * function createPlatform(config: PlatformConfig) { return Bun.serve({ port: config.port, fetch }); }
 */
export type { PlatformConfig } from "./schema.ts";

/**
 * Assembles the configuration from defaults, `--config FILE` / `SELARAS_CONFIG`, `PORT`, `HOST`,
 * `SELARAS_*` and flags, later winning. Reads no globals: pass argv and env in.
 * Throws `ConfigError` listing every problem found.
 * @example
 * const { config, command, help } = loadConfig({ argv: process.argv.slice(2), env: process.env });
 * if (help) { console.log(configHelp()); process.exit(0); }
 */
export { loadConfig } from "./load.ts";

/**
 * What `loadConfig` takes and returns.
 * @example
 * const loaded: LoadedConfig = loadConfig({ argv: ["replay", "order-history"] });
 * loaded.command; // ["replay", "order-history"]
 */
export type { LoadConfigOptions, LoadedConfig } from "./load.ts";

/**
 * A configuration that cannot be used. `message` (and `problems`) name each key, the problem and
 * the source of the bad value, one per line.
 * @example
 * try { loadConfig({ env: { PORT: "x" } }); }
 * catch (e) { if (e instanceof ConfigError) console.error(e.message); }
 * // port: expected an integer between 0 and 65535, got "x" (from env PORT)
 */
export { ConfigError } from "./errors.ts";

/**
 * The `--help` text: usage, flags and a table of every key with type, default, env var and description.
 * @example
 * console.log(configHelp());
 */
export { configHelp } from "./help.ts";
