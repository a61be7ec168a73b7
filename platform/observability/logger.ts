/** Log levels, in increasing severity. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A structured JSON logger: one line per entry on stdout (stderr for errors). */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every entry. @example log.child({ module: "orders" }) */
  child(fields: Record<string, unknown>): Logger;
}

/** Where log lines go; tests pass an array-backed sink. */
export type LogSink = (line: string, level: LogLevel) => void;

const defaultSink: LogSink = (line, level) => {
  (level === "error" ? process.stderr : process.stdout).write(line + "\n");
};

/**
 * Creates a JSON-lines logger.
 * @example const log = createLogger({ level: "info", base: { service: "selaras" } });
 */
export function createLogger(opts: {
  level: LogLevel;
  base?: Record<string, unknown>;
  sink?: LogSink;
  /** Fields of the current context (e.g. the trace id of the request being served), added to every entry. */
  context?: () => Record<string, unknown> | undefined;
}): Logger {
  const min = rank[opts.level];
  const sink = opts.sink ?? defaultSink;
  const context = opts.context ?? (() => undefined);
  const make = (base: Record<string, unknown>): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
      if (rank[level] < min) return;
      const entry: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...base, ...context(), ...fields };
      if (entry.err instanceof Error) entry.err = { message: describeError(entry.err), stack: entry.err.stack };
      sink(JSON.stringify(entry, (_k, v) => (typeof v === "bigint" ? v.toString() : v)), level);
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(opts.base ?? {});
}

/**
 * An error's message followed by its causes' (`Failed query: … <- too many connections for role
 * "x"`): the driver's reason is often only in the cause.
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const text = e instanceof Error ? e.message || e.name : String(e);
    if (!parts.includes(text)) parts.push(text);
  }
  return parts.join(" <- ");
}
