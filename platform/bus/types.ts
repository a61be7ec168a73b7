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

/** Options of a durable subscription. */
export interface SubscribeOptions {
  /** Durable consumer name, `<module>.<subscription>`: one cursor however many instances run. */
  readonly consumer: string;
  /** Event types wanted. */
  readonly types: readonly string[];
  /** Handles a batch in order; resolves with one result per delivery. */
  readonly handle: (batch: readonly Delivery[]) => Promise<readonly DeliveryResult[]>;
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
  ping(): Promise<void>;
  close(): Promise<void>;
}
