import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";

/** A W3C trace context: which trace a unit of work belongs to, and its own span. */
export interface TraceContext {
  readonly traceId: string; // 32 hex
  readonly spanId: string; // 16 hex
  readonly sampled: boolean;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Parses a `traceparent` header; undefined when absent or malformed (a bad header never fails a request). */
export function parseTraceparent(value: string | null | undefined): TraceContext | undefined {
  const m = value ? TRACEPARENT.exec(value.trim()) : null;
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, sampled: (parseInt(m[3]!, 16) & 1) === 1 };
}

/** Formats a context as a `traceparent` header value. */
export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? "01" : "00"}`;
}

// Span ids come from a pool of random bytes refilled 4 KiB at a time: one `randomBytes` call per
// span was ~3 % of a rebuild's CPU (every delivery gets a span).
let pool = Buffer.alloc(0);
let offset = 0;
function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const hex = pool.toString("hex", offset, offset + bytes);
  offset += bytes;
  return hex;
}

/** A child span of `parent`, or the root of a new trace. */
export function childSpan(parent?: TraceContext): TraceContext {
  return {
    traceId: parent?.traceId ?? randomHex(16),
    spanId: randomHex(8),
    sampled: parent?.sampled ?? true,
  };
}

/**
 * Carries the current trace through async calls, so an outbox row written deep inside a command
 * still gets the `traceparent` of the HTTP request or event that caused it.
 */
export class Tracer {
  readonly #als = new AsyncLocalStorage<TraceContext>();

  current(): TraceContext | undefined {
    return this.#als.getStore();
  }

  /** Runs `fn` inside `ctx`. @example tracer.run(childSpan(parseTraceparent(h)), () => handle()) */
  run<T>(ctx: TraceContext, fn: () => T): T {
    return this.#als.run(ctx, fn);
  }
}
