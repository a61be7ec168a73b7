import type { PlatformConfig } from "../config/schema.ts";
import type { Io } from "./dead-letters.ts";

export const REPLAY_USAGE = `Usage:
  bun run main.ts replay READ-MODEL [--until TIME] [URL]
      rebuild a read model (<module>.<subscription>, e.g. order-history.projection) from the
      retained events into a shadow copy while the live one keeps serving, then swap it in;
      with --until TIME (ISO 8601, e.g. 2025-01-31T12:00:00Z) build the view as of that moment
      into a separate copy for inspection instead (nothing is swapped).
The process hosting the read model does the work: it is reached at its topology url (--config
FILE), or at URL, or at http://127.0.0.1:<port>. Exit 0 when done, 1 when it failed, 2 on bad usage.`;

interface Parsed {
  readonly consumer: string;
  readonly until?: string;
  readonly url?: string;
}

function parse(args: readonly string[]): Parsed | string {
  const positional: string[] = [];
  let until: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--until" || a === "until") {
      until = args[++i];
      if (until === undefined) return "--until needs a time";
    } else positional.push(a);
  }
  const [consumer, url, ...extra] = positional;
  if (!consumer || extra.length > 0) return REPLAY_USAGE;
  if (!/^[a-z][a-z0-9-]*\.[A-Za-z0-9_-]+$/.test(consumer)) return `READ-MODEL is <module>.<subscription>, e.g. order-history.projection; got "${consumer}"`;
  if (url !== undefined && !/^https?:\/\//.test(url)) return `URL must start with http:// or https://, got "${url}"`;
  if (until !== undefined && (!/^\d{4}-\d\d-\d\d/.test(until) || Number.isNaN(Date.parse(until)))) return `--until expects an ISO 8601 time such as 2025-01-31T12:00:00Z, got "${until}"`;
  return { consumer, until, url };
}

/** The base URL of the process hosting `module`: its topology url, or this config's port on loopback. */
export function hostingUrl(config: PlatformConfig, module: string): string | undefined {
  const processes = Object.values(config.topology.processes);
  if (processes.length === 0) return `http://127.0.0.1:${config.port}`;
  const p = processes.find((x) => x.modules.includes(module));
  if (!p) return undefined;
  return p.url ?? (typeof p.port === "number" ? `http://127.0.0.1:${p.port}` : undefined);
}

const pct = (passed: number, total: number) => (total > 0 ? `${Math.floor((100 * passed) / total)}%` : "100%");

/** One line of the server's NDJSON answer, as the operator reads it; undefined for nothing new. */
function describe(e: Record<string, any>, last: { line?: string }): string | undefined {
  switch (e.event) {
    case "started":
      return e.mode === "swap"
        ? `rebuilding ${e.consumer} from the retained events into a shadow copy; the live one keeps serving until the swap`
        : `building ${e.consumer} as of ${e.until} into a copy for inspection`;
    case "progress": {
      const line = `  ${String(e.phase).padEnd(8)} ${e.passed}/${e.total} events read (${pct(e.passed, e.total)}), ${e.applied} applied${e.skipped > 0 ? `, ${e.skipped} skipped` : ""}${e.phase === "catch-up" ? " — live consumer paused" : ""}`;
      if (line === last.line) return undefined; // a heartbeat
      return (last.line = line);
    }
    case "done": {
      const r = e.record;
      const what = e.mode === "swapped" ? "swapped in" : `kept in ${e.location}`;
      return `done: ${what}; ${r.events} events applied${r.skipped > 0 ? `, ${r.skipped} skipped (see the log)` : ""}, checkpoint ${JSON.stringify(r.checkpoint)}, ${(r.durationMs / 1000).toFixed(1)} s`;
    }
    default:
      return undefined;
  }
}

/**
 * `replay READ-MODEL [--until TIME] [URL]`: asks the process hosting the read model to rebuild it
 * (`POST /admin/v1/read-models/{consumer}/replay`) and prints its progress as it streams in.
 * Returns the exit code.
 * @example await replayCommand(["order-history.projection"], config, io)
 */
export async function replayCommand(args: readonly string[], config: PlatformConfig, io: Io): Promise<number> {
  const parsed = parse(args);
  if (typeof parsed === "string") {
    io.err(parsed);
    return 2;
  }
  const module = parsed.consumer.slice(0, parsed.consumer.indexOf("."));
  const base = parsed.url ?? hostingUrl(config, module);
  if (!base) {
    io.err(`no process of topology.processes hosts module ${module} with a url or port; pass the URL of the process that does`);
    return 2;
  }
  const url = new URL(`/admin/v1/read-models/${encodeURIComponent(parsed.consumer)}/replay`, base);
  if (parsed.until !== undefined) url.searchParams.set("until", parsed.until);
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers: config.admin.token ? { authorization: `Bearer ${config.admin.token}` } : {} });
  } catch (err) {
    io.err(`cannot reach ${base}: ${(err as Error).message} — is the process hosting ${module} running there?`);
    return 1;
  }
  if (!res.ok || !res.body) {
    const body = (await res.json().catch(() => ({}))) as { message?: string };
    io.err(`replay refused (${res.status}): ${body.message ?? res.statusText}`);
    return 1;
  }
  let outcome = 1;
  const last: { line?: string } = {};
  for await (const line of lines(res.body)) {
    let e: Record<string, any>;
    try {
      e = JSON.parse(line) as Record<string, any>;
    } catch {
      continue;
    }
    if (e.event === "error") {
      io.err(`replay failed: ${e.message}`);
      return 1;
    }
    const text = describe(e, last);
    if (text !== undefined) io.out(text);
    if (e.event === "done") outcome = 0;
  }
  if (outcome !== 0) io.err("replay failed: the server closed the connection before the rebuild finished");
  return outcome;
}

async function* lines(body: ReadableStream<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
    }
  }
  if (buffer.trim()) yield buffer;
}
