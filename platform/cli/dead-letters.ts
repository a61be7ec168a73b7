import { existsSync } from "node:fs";
import { join } from "node:path";
import { openBus } from "../bus/open.ts";
import type { DeadLetter } from "../bus/types.ts";
import type { PlatformConfig } from "../config/schema.ts";
import type { Logger } from "../observability/logger.ts";

export const DEAD_LETTERS_USAGE = `Usage:
  bun run main.ts dead-letters [list] [CONSUMER]        the dead letters (of one consumer), oldest first
  bun run main.ts dead-letters redrive CONSUMER [SEQ]   deliver them (all of CONSUMER, or one) to that consumer again
Consumers are named <module>.<subscription>, e.g. order-history.projection. The bus is the one the
configuration names (--config, --data-dir, SELARAS_BUS__KIND …), as for the server.`;

/** Output streams, so tests can capture what the command prints. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/**
 * `dead-letters list|redrive`: the operator's view of the dead-letter queue, against the bus the
 * configuration names — it can run next to a live server. Returns the exit code.
 * @example await deadLettersCommand(["redrive", "order-history.projection"], config, logger, io)
 */
export async function deadLettersCommand(args: readonly string[], config: PlatformConfig, logger: Logger, io: Io): Promise<number> {
  const [verb = "list", ...rest] = args;
  if (verb !== "list" && verb !== "redrive") {
    io.err(`unknown dead-letters command: ${verb}\n\n${DEAD_LETTERS_USAGE}`);
    return 2;
  }
  if ((verb === "list" && rest.length > 1) || (verb === "redrive" && (rest.length < 1 || rest.length > 2))) {
    io.err(DEAD_LETTERS_USAGE);
    return 2;
  }
  const seq = rest[1] === undefined ? undefined : Number(rest[1]);
  if (seq !== undefined && !(Number.isSafeInteger(seq) && seq > 0)) {
    io.err(`SEQ must be a positive integer, got "${rest[1]}"`);
    return 2;
  }
  if (config.bus.kind === "embedded" && !existsSync(join(config.dataDir, "bus.db"))) {
    io.err(`no embedded bus log at ${join(config.dataDir, "bus.db")}: is --data-dir (or --config/--process) the one the server uses?`);
    return 1;
  }
  const bus = await openBus(config, logger);
  try {
    if (verb === "list") {
      const letters = await bus.deadLetters(rest[0]);
      for (const line of table(letters)) io.out(line);
      return 0;
    }
    const n = await bus.redrive(rest[0]!, seq);
    io.out(`re-driven: ${n}`);
    return n > 0 || seq === undefined ? 0 : 1;
  } finally {
    await bus.close();
  }
}

function table(letters: readonly DeadLetter[]): string[] {
  if (letters.length === 0) return ["no dead letters"];
  const rows = letters.map((d) => [
    String(d.seq),
    d.consumer,
    d.envelope.type,
    d.envelope.aggregateId,
    String(d.attempts),
    new Date(d.deadAt).toISOString(),
    d.error.replace(/\s+/g, " ").slice(0, 120),
  ]);
  const head = ["SEQ", "CONSUMER", "TYPE", "AGGREGATE", "ATTEMPTS", "DEAD AT", "ERROR"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [fmt(head), ...rows.map(fmt)];
}
