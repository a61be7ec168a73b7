/** An event as it travels: the outbox row plus where it came from. Identical on every bus. */
export interface EventEnvelope {
  /** UUIDv7; also the broker-side dedup key and the consumer's inbox key. */
  readonly id: string;
  /** Fully-qualified protobuf type, e.g. `orders.v1.OrderCreated`. Subjects derive from it. */
  readonly type: string;
  /** The publishing module. */
  readonly source: string;
  readonly aggregateId: string;
  /** Protobuf binary of the event message. */
  readonly payload: Uint8Array;
  /** W3C `traceparent` and friends. */
  readonly headers: Readonly<Record<string, string>>;
  /** When the outbox row was committed (ms). */
  readonly occurredAt: number;
}

/** One delivery of an event to a consumer. */
export interface Delivery {
  readonly envelope: EventEnvelope;
  /** Position in the bus (monotonic per stream). */
  readonly seq: number;
  /** 1 on first delivery, then 2, 3, … */
  readonly attempt: number;
}

/** What a consumer says of each delivery in a batch, in order. */
export type DeliveryResult = { ok: true } | { ok: false; error: Error };

/** The result of a delivery whose handler threw `err` (anything thrown, as an Error). */
export const failedDelivery = (err: unknown): DeliveryResult => ({ ok: false, error: err instanceof Error ? err : new Error(String(err)) });

/** Options of a durable subscription. */
export interface SubscribeOptions {
  /** Durable consumer name, `<module>.<subscription>`: one cursor however many instances run. */
  readonly consumer: string;
  /** Event types wanted. */
  readonly types: readonly string[];
  /** Handles a batch in order; resolves with one result per delivery. */
  readonly handle: (batch: readonly Delivery[]) => Promise<readonly DeliveryResult[]>;
  /**
   * A read model's subscription: its events are what the read model is rebuilt from, so the
   * embedded log keeps them whatever `bus.retentionHours` says (NATS streams expire by age alone).
   */
  readonly retain?: boolean;
  /**
   * How long, at most, a batch may wait for more events once its first one arrived (Kafka's
   * `linger.ms`): fewer, larger transactions for a consumer nobody waits on, such as a read model,
   * at the price of up to this much delay. A full batch (`bus.batchSize`) goes at once; stopping
   * cuts the wait short and delivers nothing, a pause holds the batch back. 0 or absent: delivered
   * as they arrive.
   */
  readonly lingerMs?: number;
}

/** A dead-lettered event: a delivery that failed `maxDeliver` times. */
export interface DeadLetter {
  readonly consumer: string;
  readonly seq: number;
  readonly envelope: EventEnvelope;
  readonly error: string;
  readonly attempts: number;
  readonly deadAt: number;
}

export interface BusSubscription {
  /** Stops delivering; resolves when the batch in flight finished. */
  stop(): Promise<void>;
  /**
   * Holds deliveries back after the batch in flight (in this process); resolves with the
   * position the consumer stopped at, its checkpoint, once that position is durable on the bus.
   * Deliveries wait until `resume`.
   */
  pause?(): Promise<BusPosition>;
  /** Delivers again after `pause`. */
  resume?(): void;
  /** The consumer's position now: the last event of each stream it has passed (a moving target while it runs). */
  position?(): Promise<BusPosition>;
}

/**
 * Where a consumer stands: per stream of the bus, the position of the last event it has passed
 * (handled, skipped as another type, or dead-lettered). The embedded bus has one stream, `log`;
 * NATS one per package and partition. A missing stream is position 0 (nothing passed).
 */
export type BusPosition = Readonly<Record<string, number>>;

/** A batch of retained events and how far it got: `passed` counts every position read, wanted type or not. */
export interface RetainedBatch {
  readonly deliveries: readonly Delivery[];
  readonly passed: number;
}

/**
 * The events a bus still holds, read again from any position: what a read model is rebuilt from
 * (and rebuilt as of a past moment). Order is kept per stream, as in delivery.
 */
export interface RetainedLog {
  /** The newest position of each stream that holds any of `types`. */
  head(types: readonly string[]): Promise<BusPosition>;
  /** Streams holding `types` whose oldest events are no longer retained (pruned, expired): a rebuild would miss them. */
  gaps(types: readonly string[]): Promise<string[]>;
  /** How many positions lie in (after, upTo] over every stream: the total `passed` of `read` over that range. */
  count(types: readonly string[], after: BusPosition, upTo: BusPosition): Promise<number>;
  /** The events of `types` in (after, upTo] of each stream, in order per stream, in batches. */
  read(types: readonly string[], after: BusPosition, upTo: BusPosition, opts: { batchSize: number; signal?: AbortSignal }): AsyncIterable<RetainedBatch>;
}

/**
 * The event bus: durable, at-least-once, ordered per aggregate. Embedded (a log in the data
 * directory) in one process, NATS JetStream when split; modules never see which.
 */
export interface Bus {
  readonly kind: string;
  /** Durably appends events (deduplicated by id); resolves once they are safe. */
  publish(events: readonly EventEnvelope[]): Promise<void>;
  subscribe(opts: SubscribeOptions): BusSubscription;
  /** Dead letters, oldest first. */
  deadLetters(consumer?: string): Promise<DeadLetter[]>;
  /** Re-delivers dead letters (all of a consumer, or one seq) to their consumer; returns how many. */
  redrive(consumer: string, seq?: number): Promise<number>;
  /** Per consumer: events not yet processed. */
  consumerLag(): Promise<Map<string, number>>;
  /** Per consumer: how many of its partitions this instance reads now (a bus that spreads partitions over instances). */
  heldPartitions?(): Map<string, number>;
  ping(): Promise<void>;
  close(): Promise<void>;
  /** The retained events, for rebuilding read models (see `RetainedLog`); absent on a bus that cannot replay. */
  readonly retained?: RetainedLog;
}
