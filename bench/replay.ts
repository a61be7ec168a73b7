/**
 * Replay speed of a read model: the bench asks the process hosting it to rebuild it —
 * `POST /admin/v1/read-models/{consumer}/replay`, what `bun run main.ts replay <consumer>` calls —
 * and reads the NDJSON progress as it streams (docs/adr/0012-read-models-and-replay.md).
 *
 * events/s = events applied / the wall time from the request to the `done` line: the whole
 * replay as an operator waits for it — opening and migrating the copy, reading and applying every
 * retained event, the catch-up and the swap. The server's own duration (its record's, which ends
 * before the swap) is kept as a second figure. When each phase's first line arrived is kept too,
 * but only as arrival times: a server busy applying events flushes its progress lines late.
 */
import { round } from "./util.ts";

/** A progress line of the replay endpoint (see platform/read-models/http.ts). */
interface ReplayLine {
  event: "started" | "progress" | "done" | "error";
  phase?: "rebuild" | "catch-up" | "swap" | "done";
  passed?: number;
  total?: number;
  applied?: number;
  skipped?: number;
  mode?: string;
  message?: string;
  record?: { events: number; skipped: number; durationMs: number; checkpoint: unknown };
}

/** Splits a byte stream into lines. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
  if (buf.trim()) yield buf;
}

/**
 * Rebuilds `consumer` on the process at `baseUrl` and times it. Gives up after `timeoutMs`
 * (closing the request aborts the rebuild; the live read model stays as it was) and then reports
 * the rate so far, with `finished: false`.
 */
export async function timeReplay(baseUrl: string, consumer: string, timeoutMs: number) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`replay not done after ${timeoutMs / 1000} s`)), timeoutMs);
  const t0 = performance.now();
  const phaseAt: Record<string, number> = {};
  let last: ReplayLine | undefined;
  let done: ReplayLine | undefined;
  let error: string | undefined;
  try {
    const res = await fetch(`${baseUrl}/admin/v1/read-models/${encodeURIComponent(consumer)}/replay`, { method: "POST", signal: abort.signal });
    if (!res.ok || !res.body) throw new Error(`replay refused: ${res.status} ${(await res.text()).slice(0, 300)}`);
    for await (const text of lines(res.body)) {
      let e: ReplayLine;
      try {
        e = JSON.parse(text) as ReplayLine;
      } catch {
        continue;
      }
      if (e.event === "error") throw new Error(`replay failed: ${e.message}`);
      if (e.event === "progress" && e.phase && phaseAt[e.phase] === undefined) phaseAt[e.phase] = performance.now() - t0;
      if (e.event === "progress") last = e;
      if (e.event === "done") done = e;
    }
    if (!done) throw new Error("the server closed the replay before it was done");
  } catch (err) {
    error = abort.signal.aborted ? String((abort.signal.reason as Error).message) : (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
  const wallSec = (performance.now() - t0) / 1000;
  const events = done?.record?.events ?? last?.applied ?? 0;
  const serverMs = done?.record?.durationMs;
  return {
    consumer,
    finished: done !== undefined,
    error,
    /** Events the copy applied (what the read model is built from). */
    events,
    skipped: done?.record?.skipped ?? last?.skipped ?? 0,
    /** Positions of the bus read (on NATS, whole package streams: other event types included). */
    passed: last?.passed ?? null,
    wallSec: round(wallSec),
    /** events / wall time of the whole replay, request to `done`. Not finished: the rate so far. */
    eventsPerSec: wallSec > 0 ? round(events / wallSec, 0) : null,
    /** The server's own duration (its record's: from the start of the rebuild to just before the swap). */
    serverDurationMs: serverMs ?? null,
    /** events / the server's own duration: without the request, the stream and the swap. */
    serverEventsPerSec: serverMs ? round(events / (serverMs / 1000), 0) : null,
    /** When the first line of each phase arrived, s after the request (late when the server was busy). */
    phasesArrivedAtSec: Object.fromEntries(Object.entries(phaseAt).map(([k, v]) => [k, round(v / 1000)])),
    checkpoint: done?.record?.checkpoint ?? null,
  };
}

export type ReplayFigures = Awaited<ReturnType<typeof timeReplay>>;
