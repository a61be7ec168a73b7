import { KEY_FLAGS } from "./argv.ts";
import { CONFIG_KEYS } from "./keys.ts";

const WIDTH = 100;
const INDENT = "      ";

function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => `  ${r.map((cell, c) => (c < r.length - 1 ? cell.padEnd(widths[c]!) : cell)).join("  ")}`);
}

function wrap(text: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && INDENT.length + line.length + 1 + word.length > WIDTH) {
      lines.push(INDENT + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(INDENT + line);
  return lines;
}

/** The `--help` text: usage, flags, then every key with its type, default, env vars and description. */
export function configHelp(): string {
  const flags = table([
    ["--config FILE", "Config file: JSON, or TOML under Bun (env SELARAS_CONFIG)"],
    ...KEY_FLAGS.map((f) => [`${f.flag} ${f.arg}`, `Same as --set ${f.key}=${f.arg}`]),
    ["--set KEY=VALUE", "Set any key below, e.g. --set outbox.batchSize=1000 (repeatable)"],
    ["-h, --help", "Print this help"],
  ]);
  const keys = table([
    ["KEY", "TYPE", "DEFAULT", "ENV"],
    ...CONFIG_KEYS.map((k) => [
      k.name,
      k.expected.replace(/^an? /, ""),
      k.default === undefined ? "(none)" : JSON.stringify(k.default),
      k.env.join(", "),
    ]),
  ]);
  const described = keys.flatMap((row, i) => (i === 0 ? [row] : [row, ...wrap(CONFIG_KEYS[i - 1]!.description)]));
  return [
    "Usage: bun run main.ts [--config FILE] [--process NAME] [flags] [command...]",
    "",
    "Flags:",
    ...flags,
    "",
    "Each key is taken from, later winning: its default < the config file < the environment < flags.",
    "A config file nests keys as objects ({\"outbox\": {\"batchSize\": 1000}}); unknown keys are errors.",
    "In the environment and flags, arrays are JSON ([100,500]) or comma lists (100,500).",
    "",
    "Keys:",
    ...described,
    "",
  ].join("\n");
}
