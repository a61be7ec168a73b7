import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { EventEnvelope } from "../types.ts";

/** Header names of the envelope on NATS messages; the payload is the protobuf body itself. */
export const H = {
  eventId: "Selaras-Event-Id",
  type: "Selaras-Type",
  source: "Selaras-Source",
  aggregateId: "Selaras-Aggregate-Id",
  occurredAt: "Selaras-Occurred-At",
  /** Envelope headers that cannot travel as NATS headers as they are (JSON). */
  extra: "Selaras-Headers",
  // Dead letters and redrives.
  consumer: "Selaras-Consumer",
  error: "Selaras-Error",
  attempts: "Selaras-Attempts",
  deadAt: "Selaras-Dead-At",
  stream: "Selaras-Stream",
  streamSeq: "Selaras-Stream-Seq",
} as const;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const reserved = (key: string) => /^(nats|selaras)-/i.test(key);
/** A header NATS carries unchanged: a token key of ours, a value without CR/LF or edge blanks (NATS trims). */
const travelsAsIs = (key: string, value: string) => TOKEN.test(key) && !reserved(key) && !/[\r\n]/.test(value) && value.trim() === value;

/**
 * The envelope as NATS headers: `Selaras-*` fields plus the event's own headers (`traceparent`
 * and friends) as they are, so NATS tooling sees them; odd ones travel as JSON in `Selaras-Headers`.
 */
export function envelopeHeaders(e: EventEnvelope): MsgHdrs {
  const h = natsHeaders();
  h.set(H.eventId, e.id);
  h.set(H.type, e.type);
  h.set(H.source, e.source);
  h.set(H.aggregateId, e.aggregateId);
  h.set(H.occurredAt, String(e.occurredAt));
  let extra: Record<string, string> | undefined;
  for (const [k, v] of Object.entries(e.headers)) {
    if (travelsAsIs(k, v)) h.set(k, v);
    else (extra ??= {})[k] = v;
  }
  if (extra) h.set(H.extra, JSON.stringify(extra));
  return h;
}

/** Reads the envelope back from a message written with `envelopeHeaders` (or a copy of its headers). */
export function envelopeOf(hdrs: MsgHdrs | undefined, payload: Uint8Array): EventEnvelope {
  const get = (k: string) => {
    const v = hdrs?.get(k);
    if (!v) throw new Error(`message has no ${k} header: not a Selaras event`);
    return v;
  };
  const headers: Record<string, string> = {};
  for (const k of hdrs?.keys() ?? []) if (!reserved(k)) headers[k] = hdrs!.get(k);
  const extra = hdrs?.get(H.extra);
  if (extra) Object.assign(headers, JSON.parse(extra) as Record<string, string>);
  return {
    id: get(H.eventId),
    type: get(H.type),
    source: get(H.source),
    aggregateId: hdrs?.get(H.aggregateId) ?? "",
    occurredAt: Number(get(H.occurredAt)),
    // A copy: the handler may keep it after the client reuses its read buffer.
    payload: payload.slice(),
    headers,
  };
}

/** A copy of `hdrs` without the `Nats-*` ones (a message id must not follow the event to another stream). */
export function copyHeaders(hdrs: MsgHdrs | undefined): MsgHdrs {
  const h = natsHeaders();
  for (const k of hdrs?.keys() ?? []) {
    if (/^nats-/i.test(k)) continue;
    for (const v of hdrs!.values(k)) h.append(k, v);
  }
  return h;
}

/** A header value from any text: one line, bounded. */
export function headerValue(text: string, max = 2048): string {
  const line = text.replace(/[\r\n]+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
