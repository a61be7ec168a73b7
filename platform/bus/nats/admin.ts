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
