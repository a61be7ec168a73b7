import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

/** Retention settings of a stream. */
export interface StreamSettings {
  /** 0 keeps messages until deleted. */
  readonly maxAgeMs: number;
  readonly duplicateWindowMs: number;
  readonly replicas: number;
}

const STREAM_NAME_IN_USE = 10058;

/**
 * Creates a stream, or brings an existing one to these subjects and limits: idempotent, safe when
 * several processes start at once. A change NATS cannot apply (e.g. storage type) fails loudly.
 */
export async function ensureStream(jsm: JetStreamManager, name: string, subjects: string[], s: StreamSettings): Promise<void> {
  const limits = {
    subjects,
    max_age: nanos(s.maxAgeMs),
    // NATS refuses a duplicate window longer than the retention.
    duplicate_window: nanos(s.maxAgeMs > 0 ? Math.min(s.duplicateWindowMs, s.maxAgeMs) : s.duplicateWindowMs),
    num_replicas: s.replicas,
  };
  try {
    await jsm.streams.add({ name, retention: RetentionPolicy.Limits, storage: StorageType.File, discard: DiscardPolicy.Old, ...limits });
  } catch (err) {
    if (!(err instanceof JetStreamApiError)) throw err;
    // Another process may have created it a moment ago: depending on timing NATS answers "name
    // in use" or "subjects overlap". Either way, if the stream exists now, bring it up to date.
    if (err.code !== STREAM_NAME_IN_USE && !(await streamExists(jsm, name))) throw err;
    await jsm.streams.update(name, limits);
  }
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError) return false;
    throw err;
  }
}

/** Settings of a durable consumer. */
export interface ConsumerSettings {
  readonly ackWaitMs: number;
  /**
   * Messages delivered and not yet acked. An event partition's consumer is read by one instance
   * at a time (a lease, see `PartitionLeases`), so many may be in flight and still be handled in
   * order; the redrive consumer, read by every instance, keeps 1.
   */
  readonly maxAckPending: number;
  /**
   * "all": acking a message acks every earlier one — an event partition's single reader handles
   * in order and acks once per batch. "explicit": each message on its own (the redrive consumer).
   */
  readonly ackAll: boolean;
}

const CONSUMER_NOT_FOUND = 10014;

/**
 * Creates a durable pull consumer (`filter` "" reads the whole stream), or brings an existing one
 * to this filter and these limits.
 *
 * A changed filter recreates the consumer at its position instead of updating it: NATS 2.9
 * accepts the update but then delivers nothing.
 */
export async function ensureConsumer(jsm: JetStreamManager, stream: string, durable: string, filter: string, s: ConsumerSettings): Promise<void> {
  const limits = { max_ack_pending: s.maxAckPending, ack_wait: nanos(s.ackWaitMs), max_deliver: -1 };
  let info;
  try {
    info = await jsm.consumers.info(stream, durable);
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== CONSUMER_NOT_FOUND) throw err;
    // Two instances may race here: creating the same config twice is a no-op.
    await jsm.consumers.add(stream, { ...consumerBase(durable, filter, s), deliver_policy: DeliverPolicy.All });
    return;
  }
  const c = info.config;
  if ((c.filter_subject ?? "") !== filter) {
    // What was in flight is delivered again; the inbox absorbs it.
    await recreateAt(jsm, stream, durable, filter, s, info.ack_floor.stream_seq);
  } else if (c.ack_policy !== consumerBase(durable, filter, s).ack_policy) {
    // The ack policy cannot be updated: recreated at its position (what was in flight comes again).
    await recreateAt(jsm, stream, durable, filter, s, info.ack_floor.stream_seq);
  } else if (c.max_ack_pending !== limits.max_ack_pending || c.ack_wait !== limits.ack_wait || c.max_deliver !== limits.max_deliver) {
    await jsm.consumers.update(stream, durable, limits);
  }
}

/**
 * Taking over a partition: messages a previous reader was handed and never acked (it died, or
 * lost its lease) would come back only after their ack wait, behind newer ones — out of order. If
 * there are any, the consumer is recreated at its ack floor, so everything after the floor is
 * delivered again, in stream order (what had been handled is a duplicate for the inbox).
 * Returns whether it did.
 */
export async function resetToAckFloor(jsm: JetStreamManager, stream: string, durable: string, filter: string, s: ConsumerSettings): Promise<boolean> {
  const info = await jsm.consumers.info(stream, durable);
  if (info.num_ack_pending === 0 && info.num_redelivered === 0) return false;
  await recreateAt(jsm, stream, durable, filter, s, info.ack_floor.stream_seq);
  return true;
}

function consumerBase(durable: string, filter: string, s: ConsumerSettings) {
  return {
    durable_name: durable,
    ack_policy: s.ackAll ? AckPolicy.All : AckPolicy.Explicit,
    replay_policy: ReplayPolicy.Instant,
    ...(filter ? { filter_subject: filter } : {}),
    max_ack_pending: s.maxAckPending,
    ack_wait: nanos(s.ackWaitMs),
    max_deliver: -1,
  };
}

async function recreateAt(jsm: JetStreamManager, stream: string, durable: string, filter: string, s: ConsumerSettings, ackFloor: number): Promise<void> {
  await jsm.consumers.delete(stream, durable).catch((err) => {
    if (!(err instanceof JetStreamApiError) || err.code !== CONSUMER_NOT_FOUND) throw err;
  });
  const start = ackFloor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: ackFloor + 1 } : { deliver_policy: DeliverPolicy.All };
  await jsm.consumers.add(stream, { ...consumerBase(durable, filter, s), ...start });
}

/** Thrown at start when the configured partition count would strand or reorder events (`checkPartitions`). */
export class PartitionCountChanged extends Error {
  override readonly name = "PartitionCountChanged";
}

/**
 * Refuses a change of `bus.nats.partitions` while a consumer still has events to read in the
 * package streams of the old count. With fewer partitions, the streams beyond the new count
 * would never be read again; with more, an aggregate's next events could be delivered from its
 * new partition before its older ones left the old. A package whose streams on the server are
 * not partitions 0…n-1 is checked: every consumer in them must have nothing pending or unacked.
 * Streams left behind with nothing pending are named in a warning (delete them when their
 * events are no longer needed for replay).
 */
export async function checkPartitions(jsm: JetStreamManager, prefix: string, partitions: number, warn: (msg: string, fields: Record<string, unknown>) => void): Promise<void> {
  // The prefix is letters, digits, `_` and `-` (PREFIX_PATTERN): nothing to escape.
  const subject = new RegExp(`^${prefix}\\.events\\.(.+)\\.\\*\\.(\\d+)$`);
  const byPackage = new Map<string, Array<{ stream: string; partition: number }>>();
  for await (const info of jsm.streams.list(`${prefix}.events.>`)) {
    const m = info.config.subjects?.length === 1 ? subject.exec(info.config.subjects[0]!) : null;
    if (!m) continue;
    const list = byPackage.get(m[1]!) ?? [];
    list.push({ stream: info.config.name, partition: Number(m[2]) });
    byPackage.set(m[1]!, list);
  }
  const problems: string[] = [];
  for (const [pkg, streams] of byPackage) {
    const indexes = new Set(streams.map((s) => s.partition));
    if (indexes.size === partitions && streams.every((s) => s.partition < partitions)) continue;
    const beyond: string[] = [];
    for (const { stream, partition } of streams.sort((a, b) => a.partition - b.partition)) {
      let left = 0;
      for await (const c of jsm.consumers.list(stream)) {
        const n = c.num_pending + c.num_ack_pending;
        if (n > 0) problems.push(`${stream} (package ${pkg}, partition ${partition}): consumer ${c.name} has ${n} event(s) to read`);
        left += n;
      }
      if (left === 0 && partition >= partitions) beyond.push(stream);
    }
    if (beyond.length > 0) warn("event streams beyond bus.nats.partitions are no longer read; nothing is left in them to read (delete them once their events are not needed for replays)", { package: pkg, partitions, streams: beyond });
  }
  if (problems.length > 0) {
    throw new PartitionCountChanged(
      `bus.nats.partitions is ${partitions}, but the event streams on the server were made for another count and consumers still have events in them; changing the count now would leave those events unread or out of order. Start with the previous count until every consumer has caught up (or remove the consumers that will never read them):\n  ${problems.join("\n  ")}`,
    );
  }
}
