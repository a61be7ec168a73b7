import { coerce, coerceLoose } from "./coerce.ts";
import { findKey, isGroup } from "./keys.ts";
import type { Assignment } from "./merge.ts";

/** Flags that set one key each; `--set` reaches every key. Listed by `--help`. */
export const KEY_FLAGS = [
  { flag: "--port", arg: "PORT", key: "port" },
  { flag: "--host", arg: "HOST", key: "host" },
  { flag: "--data-dir", arg: "DIR", key: "dataDir" },
  { flag: "--log-level", arg: "LEVEL", key: "logLevel" },
  { flag: "--process", arg: "NAME", key: "process" },
] as const;

const FLAG_KEYS = new Map(KEY_FLAGS.map((f) => [f.flag as string, findKey([f.key])!.key]));
/** Flags of sub-commands (`replay <read-model> --until <time>`): passed on with their value among the positionals. */
export const COMMAND_FLAGS = new Set(["--until"]);
const VALUE_FLAGS = new Set(["--config", "--set", ...FLAG_KEYS.keys()]);

export interface ParsedArgv {
  readonly assignments: Assignment[];
  readonly problems: string[];
  configFile?: string;
  help: boolean;
  /** Positional arguments, for sub-commands such as `replay <read-model>`. */
  readonly command: string[];
}

function parseSet(text: string, out: ParsedArgv): void {
  const eq = text.indexOf("=");
  if (eq <= 0) {
    out.problems.push(`--set ${text}: expected KEY=VALUE, e.g. --set outbox.batchSize=1000`);
    return;
  }
  const path = text.slice(0, eq).split(".");
  const raw = text.slice(eq + 1);
  const found = findKey(path);
  if (found && found.rest.length === 0) out.assignments.push({ path, value: coerce(found.key.node, raw), raw, from: "--set" });
  // Below `modules.<name>` and for whole groups (`--set http={...}`) the value is JSON or a string.
  else if ((found && found.key.open) || isGroup(path)) out.assignments.push({ path, value: coerceLoose(raw), raw, from: "--set" });
  else out.problems.push(`${path.join(".")}: unknown key (from --set; see --help)`);
}

function apply(flag: string, value: string, out: ParsedArgv): void {
  if (flag === "--config") out.configFile = value;
  else if (flag === "--set") parseSet(value, out);
  else {
    const key = FLAG_KEYS.get(flag)!;
    out.assignments.push({ path: key.segments, value: coerce(key.node, value), raw: value, from: flag });
  }
}

/** Splits argv into assignments, the config file, `--help` and positionals; a later flag wins. */
export function parseArgv(argv: readonly string[]): ParsedArgv {
  const out: ParsedArgv = { assignments: [], problems: [], help: false, command: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.command.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "--help" || arg === "-h") out.help = true;
    else if (!arg.startsWith("-") || arg === "-") out.command.push(arg);
    else {
      const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
      const flag = eq > 0 ? arg.slice(0, eq) : arg;
      const next = argv[i + 1];
      if (COMMAND_FLAGS.has(flag)) {
        if (eq > 0) out.command.push(flag, arg.slice(eq + 1));
        else if (next === undefined || next.startsWith("--")) out.problems.push(`${flag}: missing value`);
        else out.command.push(flag, argv[++i]!);
      } else if (!VALUE_FLAGS.has(flag)) out.problems.push(`${flag}: unknown flag (see --help)`);
      else if (eq > 0) apply(flag, arg.slice(eq + 1), out);
      // A following flag is not a value: `--port --host x` is a forgotten value, not port "--host".
      else if (next === undefined || next.startsWith("--")) out.problems.push(`${flag}: missing value`);
      else apply(flag, argv[++i]!, out);
    }
  }
  return out;
}
