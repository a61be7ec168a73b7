import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { describeError } from "../../observability/logger.ts";
import { nanos, type MsgHdrs } from "@nats-io/transport-node";
import type { DeadLetter } from "../types.ts";
import { copyHeaders, envelopeOf, H, headerValue } from "./envelope.ts";
import { consumerToken, dlqStream, dlqSubject, redriveSubject } from "./names.ts";

/** What the dead-letter functions need from the bus. */
export interface DlqContext {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly prefix: string;
  readonly timeoutMs: number;
}

/**
 * Writes a failed delivery to `<prefix>.dlq.<consumer>`: its headers and payload unchanged, plus
 * the consumer, the error and the attempts. The message id makes a retry of this write (a crash
 * before the original was terminated) a no-op; a redriven event failing again is a new entry.
 */
export async function writeDeadLetter(ctx: DlqContext, consumer: string, m: JsMsg, error: Error, attempts: number): Promise<void> {
  const h = copyHeaders(m.headers);
  h.set(H.consumer, consumer);
  h.set(H.error, headerValue(describeError(error)));
  h.set(H.attempts, String(attempts));
  h.set(H.deadAt, String(Date.now()));
  // A redriven event keeps the position it was first published at.
  if (!h.has(H.stream)) {
    h.set(H.stream, m.info.stream);
    h.set(H.streamSeq, String(m.seq));
  }
  await ctx.js.publish(dlqSubject(ctx.prefix, consumer), m.data, {
    msgID: `dlq:${consumerToken(consumer)}:${m.info.stream}:${m.seq}`,
    headers: h,
    timeout: ctx.timeoutMs,
  });
}

interface StoredDeadLetter {
  readonly letter: DeadLetter;
  readonly headers: MsgHdrs;
  readonly data: Uint8Array;
}

/** Dead letters, oldest first, read through a short-lived ephemeral consumer on the DLQ stream. */
export async function readDeadLetters(ctx: DlqContext, consumer?: string): Promise<StoredDeadLetter[]> {
  const stream = dlqStream(ctx.prefix);
  const info = await ctx.jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    filter_subject: consumer === undefined ? `${ctx.prefix}.dlq.>` : dlqSubject(ctx.prefix, consumer),
    // Cleaned up below; the threshold only covers a crash in between.
    inactive_threshold: nanos(60_000),
    mem_storage: true,
  });
  const out: StoredDeadLetter[] = [];
  try {
    const reader = await ctx.js.consumers.get(stream, info.name);
    let left = info.num_pending;
    while (left > 0) {
      let got = 0;
      for await (const m of await reader.fetch({ max_messages: Math.min(left, 256), expires: Math.max(1000, ctx.timeoutMs) })) {
        got++;
        const letter = toDeadLetter(m);
        // Two names can share a subject token (`a.b`, `a_b`): the header has the exact name.
        if (consumer === undefined || letter.consumer === consumer) out.push({ letter, headers: m.headers!, data: m.data });
      }
      if (got === 0) break; // deleted meanwhile
      left -= got;
    }
  } finally {
    await ctx.jsm.consumers.delete(stream, info.name).catch(() => {});
  }
  return out;
}

function toDeadLetter(m: JsMsg): DeadLetter {
  return {
    consumer: m.headers?.get(H.consumer) ?? "",
    // The position in the DLQ stream: what `redrive(consumer, seq)` takes.
    seq: m.seq,
    envelope: envelopeOf(m.headers, m.data),
    error: m.headers?.get(H.error) ?? "",
    attempts: Number(m.headers?.get(H.attempts) ?? 0),
    deadAt: Number(m.headers?.get(H.deadAt) ?? 0),
  };
}

/**
 * Moves a consumer's dead letters (all, or the one at DLQ `seq`) to `<prefix>.redrive.<consumer>`,
 * which that consumer's subscription also reads, then deletes them from the DLQ. Only that consumer
 * sees them again; the event streams stay untouched. Publish-then-delete with a message id: a crash
 * in between redrives once.
 */
export async function redriveDeadLetters(ctx: DlqContext, consumer: string, seq?: number): Promise<number> {
  const stored = (await readDeadLetters(ctx, consumer)).filter((d) => seq === undefined || d.letter.seq === seq);
  for (const d of stored) {
    const h = copyHeaders(d.headers);
    for (const k of [H.error, H.attempts, H.deadAt]) h.delete(k);
    await ctx.js.publish(redriveSubject(ctx.prefix, consumer), d.data, { msgID: `redrive:${d.letter.seq}`, headers: h, timeout: ctx.timeoutMs });
    await ctx.jsm.streams.deleteMessage(dlqStream(ctx.prefix), d.letter.seq, false);
  }
  return stored.length;
}
