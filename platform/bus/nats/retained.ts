import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { BusPosition, Delivery, RetainedBatch, RetainedLog } from "../types.ts";
import type { NatsBus } from "./bus.ts";
import { envelopeOf } from "./envelope.ts";
import { eventStream, splitType } from "./names.ts";

/**
 * The event streams read again for a rebuild: positions are stream sequences, one per package
 * and partition stream. Each stream is read from a position through a short-lived ephemeral
 * consumer (no acks, in memory), like the dead-letter listing; the durable consumers are not
 * touched.
 */
export class NatsRetainedLog implements RetainedLog {
  constructor(private readonly bus: NatsBus) {}

  /** Every partition stream of the packages of `types` (created if missing, as a subscription would). */
  async streams(types: readonly string[]): Promise<string[]> {
    const packages = [...new Set(types.map((t) => splitType(t).pkg))];
    await Promise.all(packages.map((pkg) => this.bus.ensurePackageStream(pkg)));
    const { prefix, partitions } = this.bus.opts;
    return packages.flatMap((pkg) => Array.from({ length: partitions }, (_, p) => eventStream(prefix, pkg, p)));
  }

  async head(types: readonly string[]): Promise<BusPosition> {
    const streams = await this.streams(types);
    const infos = await Promise.all(streams.map((s) => this.bus.jsm.streams.info(s)));
    return Object.fromEntries(streams.map((s, i) => [s, infos[i]!.state.last_seq]));
  }

  async gaps(types: readonly string[]): Promise<string[]> {
    const streams = await this.streams(types);
    const infos = await Promise.all(streams.map((s) => this.bus.jsm.streams.info(s)));
    // first_seq is 0 in a stream that never held a message, last_seq + 1 once all expired.
    return streams.flatMap((s, i) => (infos[i]!.state.first_seq > 1 ? [`${s}: events before seq ${infos[i]!.state.first_seq} are gone (expired after bus.retentionHours, or deleted)`] : []));
  }

  async count(_types: readonly string[], after: BusPosition, upTo: BusPosition): Promise<number> {
    return Object.entries(upTo).reduce((n, [s, end]) => n + Math.max(0, end - (after[s] ?? 0)), 0);
  }

  async *read(types: readonly string[], after: BusPosition, upTo: BusPosition, opts: { batchSize: number; signal?: AbortSignal }): AsyncIterable<RetainedBatch> {
    const wanted = new Set(types);
    for (const [stream, end] of Object.entries(upTo)) {
      const from = after[stream] ?? 0;
      if (end > from) yield* this.#readStream(stream, from, end, wanted, opts);
    }
  }

  async *#readStream(stream: string, from: number, end: number, wanted: Set<string>, opts: { batchSize: number; signal?: AbortSignal }): AsyncIterable<RetainedBatch> {
    const { jsm, js } = this.bus;
    const timeoutMs = this.bus.opts.requestTimeoutMs;
    const info = await jsm.consumers.add(stream, {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from + 1,
      // Deleted below; the threshold only covers a crash in between.
      inactive_threshold: nanos(60_000),
      mem_storage: true,
    });
    let at = from;
    try {
      const reader = await js.consumers.get(stream, info.name);
      while (at < end) {
        opts.signal?.throwIfAborted();
        const deliveries: Delivery[] = [];
        let last = at;
        for await (const m of await reader.fetch({ max_messages: Math.min(opts.batchSize, end - at), expires: Math.max(1000, timeoutMs) })) {
          if (m.seq > end) break;
          last = m.seq;
          let envelope;
          try {
            envelope = envelopeOf(m.headers, m.data);
          } catch {
            continue; // not a Selaras event: the live consumer terminated it too
          }
          if (wanted.has(envelope.type)) deliveries.push({ envelope, seq: m.seq, attempt: 1 });
        }
        // Nothing more (messages deleted at the end of the range): the range is done anyway.
        if (last === at) last = end;
        yield { deliveries, passed: last - at };
        at = last;
      }
    } finally {
      await jsm.consumers.delete(stream, info.name).catch(() => {});
    }
  }
}
