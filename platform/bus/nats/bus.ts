import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { NoRespondersError, type NatsConnection } from "@nats-io/transport-node";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "../../observability/logger.ts";
import type { Bus, BusSubscription, DeadLetter, EventEnvelope, RetainedLog, SubscribeOptions } from "../types.ts";
import { checkPartitions, ensureConsumer, ensureStream, type ConsumerSettings, type StreamSettings } from "./admin.ts";
import { readDeadLetters, redriveDeadLetters, writeDeadLetter, type DlqContext } from "./dead-letters.ts";
import { envelopeHeaders } from "./envelope.ts";
import { dlqStream, eventStream, eventStreamSubjects, eventSubject, leaseBucket, partitionOf, PREFIX_PATTERN, redriveStream, splitType } from "./names.ts";
import { PartitionLeases } from "./leases.ts";
import { NatsRetainedLog } from "./retained.ts";
import { NatsSubscription } from "./subscription.ts";
import { connectNats } from "./transport.ts";

/** Settings of the NATS JetStream bus (from the `bus` and `bus.nats` config sections). */
export interface NatsBusOptions {
  /** Server URLs, e.g. `nats://127.0.0.1:4222`. */
  readonly servers: readonly string[];
  /** First subject token and stream-name prefix; lets several deployments share a server. */
  readonly prefix: string;
  /** Aggregates are hashed onto this many partitions (a stream per package and partition), each consumed in order. */
  readonly partitions: number;
  readonly maxDeliver: number;
  readonly backoffMs: readonly number[];
  /** Event streams keep messages this long (replay window). */
  readonly retentionHours: number;
  readonly duplicateWindowSeconds: number;
  readonly ackWaitSeconds: number;
  /** PubAcks and JetStream API calls. */
  readonly requestTimeoutMs: number;
  readonly reconnectWaitMs: number;
  readonly replicas: number;
  /** Messages in flight per partition consumer (delivered, not yet acked). */
  readonly maxAckPending: number;
  /** Most events handed to a handler in one batch (one transaction). */
  readonly batchSize: number;
  /** A partition lease not renewed for this long expires: how long a dead reader's partitions wait for a standby. */
  readonly leaseSeconds: number;
  /** Connection name shown by the server. */
  readonly name?: string;
  readonly logger: Logger;
}

/**
 * Connects to NATS and checks JetStream is enabled. Streams are created (or updated) when first
 * published to or subscribed from.
 *
 * @example const bus = await openNatsBus({ servers: ["nats://127.0.0.1:4222"], prefix: "selaras", ... });
 */
export async function openNatsBus(opts: NatsBusOptions): Promise<NatsBus> {
  if (!PREFIX_PATTERN.test(opts.prefix)) throw new Error(`NATS bus prefix "${opts.prefix}" must be lower-case letters, digits, _ and -, starting with a letter`);
  if (!Number.isInteger(opts.partitions) || opts.partitions < 1) throw new Error(`NATS bus partitions must be a positive integer, got ${opts.partitions}`);
  const nc = await connectNats({
    servers: [...opts.servers],
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: opts.reconnectWaitMs,
    timeout: opts.requestTimeoutMs,
    // Otherwise every request (each publish waits for its JetStream ack) builds two Error objects
    // up front, stack traces included, for a failure that rarely comes: ~2 % of a process's
    // profile samples on the saga's hot path. A failed request still says what failed (a timeout, no responders).
    noAsyncTraces: true,
  }).catch((err: Error) => {
    throw new Error(`cannot connect to NATS at ${opts.servers.join(", ")}: ${err.message}`, { cause: err });
  });
  try {
    const jsm = await jetstreamManager(nc, { timeout: opts.requestTimeoutMs });
    await checkPartitions(jsm, opts.prefix, opts.partitions, (msg, fields) => opts.logger.warn(msg, fields));
    return new NatsBus(nc, jetstream(nc, { timeout: opts.requestTimeoutMs }), jsm, opts);
  } catch (err) {
    await nc.close();
    throw err;
  }
}

/**
 * The bus on NATS JetStream (ADR 0006): events on `<prefix>.events.<type>.<partition>` with the
 * event id as `Nats-Msg-Id`, one stream per proto package and partition, a durable pull consumer
 * per subscription in each stream it reads — each read by one instance at a time, the holder of
 * its lease in the KV bucket `<PREFIX>_LEASES` — dead letters in `<PREFIX>_DLQ`, redrives through
 * `<PREFIX>_REDRIVE`.
 */
export class NatsBus implements Bus {
  readonly kind = "nats";
  readonly #subs = new Set<NatsSubscription>();
  readonly #streams = new Map<string, Promise<void>>();
  readonly #status: Promise<void>;
  readonly #dlq: DlqContext;
  #leases: Promise<PartitionLeases> | undefined;
  /** Who holds this instance's leases: service, host, pid and a random part. */
  readonly owner: string;
  #connected = true;
  #closed = false;
  /** The event streams read again from any position, for rebuilding read models. */
  readonly retained: RetainedLog = new NatsRetainedLog(this);

  constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly opts: NatsBusOptions,
  ) {
    this.#dlq = { js, jsm, prefix: opts.prefix, timeoutMs: opts.requestTimeoutMs };
    this.owner = `${opts.name ?? "selaras"}@${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#status = this.#watch();
  }

  async #watch(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") {
        this.#connected = false;
        this.opts.logger.warn("NATS connection lost; reconnecting", { server: s.server });
      } else if (s.type === "reconnect") {
        this.#connected = true;
        this.opts.logger.info("NATS connection restored", { server: s.server });
      }
    }
  }

  /** Publishes and awaits every PubAck; rejects at once while disconnected (events wait in the outbox). */
  async publish(events: readonly EventEnvelope[]): Promise<void> {
    if (this.#closed) throw new Error("bus is closed");
    if (!this.#connected) throw new Error("NATS is unreachable (reconnecting)");
    if (events.length === 0) return;
    await Promise.all([...new Set(events.map((e) => splitType(e.type).pkg))].map((pkg) => this.ensurePackageStream(pkg)));
    const { prefix, partitions, requestTimeoutMs } = this.opts;
    // Pipelined: one connection keeps publish order, so the stream order is the batch order.
    const acks = await Promise.allSettled(
      events.map((e) =>
        this.js.publish(eventSubject(prefix, e.type, partitionOf(e.aggregateId, partitions)), e.payload, {
          msgID: e.id,
          headers: envelopeHeaders(e),
          timeout: requestTimeoutMs,
        }),
      ),
    );
    const failed = acks.find((a) => a.status === "rejected");
    if (failed) {
      // No stream took it: deleted behind our back? Ensure it again next time.
      if (failed.reason instanceof NoRespondersError || /no responders/i.test(String(failed.reason))) this.#streams.clear();
      throw failed.reason;
    }
  }

  subscribe(opts: SubscribeOptions): BusSubscription {
    if (this.#closed) throw new Error("bus is closed");
    if ([...this.#subs].some((s) => s.consumer === opts.consumer)) throw new Error(`consumer ${opts.consumer} is subscribed twice`);
    const sub = new NatsSubscription(this, opts);
    this.#subs.add(sub);
    sub.start();
    return {
      stop: async () => {
        this.#subs.delete(sub);
        await sub.stop();
      },
      pause: () => sub.pause(),
      resume: () => sub.resume(),
      position: () => sub.position(),
    };
  }

  /** How many partitions of `consumer` this instance reads now (the others stand by or read elsewhere). */
  partitionsHeld(consumer: string): number {
    return [...this.#subs].find((s) => s.consumer === consumer)?.partitionsHeld ?? 0;
  }

  heldPartitions(): Map<string, number> {
    return new Map([...this.#subs].map((s) => [s.consumer, s.partitionsHeld]));
  }

  async deadLetters(consumer?: string): Promise<DeadLetter[]> {
    this.#assertReachable();
    await this.ensureSystemStreams();
    return (await readDeadLetters(this.#dlq, consumer)).map((d) => d.letter);
  }

  /** Re-delivers dead letters to their consumer only; `seq` is the dead letter's own (see `deadLetters`). */
  async redrive(consumer: string, seq?: number): Promise<number> {
    this.#assertReachable();
    await this.ensureSystemStreams();
    return redriveDeadLetters(this.#dlq, consumer, seq);
  }

  async consumerLag(): Promise<Map<string, number>> {
    this.#assertReachable();
    const subs = [...this.#subs];
    const lags = await Promise.all(subs.map((s) => s.lag()));
    return new Map(subs.map((s, i) => [s.consumer, lags[i]!]));
  }

  async ping(): Promise<void> {
    this.#assertReachable();
    await this.jsm.getAccountInfo();
  }

  /** Fails at once while disconnected, instead of waiting out a request timeout (a /metrics scrape during an outage stays fast). */
  #assertReachable(): void {
    if (this.#closed || this.nc.isClosed()) throw new Error("NATS connection is closed");
    if (!this.#connected) throw new Error("NATS is unreachable (reconnecting)");
  }

  /** Stops every subscription (in-flight messages finish and are acked), then drains the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#subs].map((s) => s.stop()));
    this.#subs.clear();
    try {
      await this.within(this.nc.drain(), "NATS drain timed out");
    } catch {
      await this.nc.close();
    }
    await this.#status;
  }

  // ---- for subscriptions ----

  /** The package's partition streams exist with the configured limits (checked once per process). */
  async ensurePackageStream(pkg: string): Promise<void> {
    const { prefix, partitions, retentionHours, duplicateWindowSeconds, replicas } = this.opts;
    const duplicateWindowMs = duplicateWindowSeconds * 1000;
    // NATS reads max_age 0 as "forever": retention 0 keeps the dedup window instead.
    const maxAgeMs = Math.max(Math.round(retentionHours * 3_600_000), duplicateWindowMs);
    const streams = Array.from({ length: partitions }, (_, p) => this.#ensure(eventStream(prefix, pkg, p), [eventStreamSubjects(prefix, pkg, p)], { maxAgeMs, duplicateWindowMs, replicas }));
    await Promise.all(streams);
  }

  /** The dead-letter stream (kept until redriven) and the redrive stream exist. */
  async ensureSystemStreams(): Promise<void> {
    const { prefix, retentionHours, duplicateWindowSeconds, replicas } = this.opts;
    const duplicateWindowMs = duplicateWindowSeconds * 1000;
    await Promise.all([
      this.#ensure(dlqStream(prefix), [`${prefix}.dlq.>`], { maxAgeMs: 0, duplicateWindowMs, replicas }),
      this.#ensure(redriveStream(prefix), [`${prefix}.redrive.>`], { maxAgeMs: Math.max(Math.round(retentionHours * 3_600_000), duplicateWindowMs), duplicateWindowMs, replicas }),
    ]);
  }

  ensureConsumer(stream: string, durable: string, filter: string, kind: "partition" | "redrive"): Promise<void> {
    return ensureConsumer(this.jsm, stream, durable, filter, this.consumerSettings(kind));
  }

  /** An event partition's consumer (`partition`: one reader, batches, ack-all) or the redrive consumer (every instance, one message at a time). */
  consumerSettings(kind: "partition" | "redrive"): ConsumerSettings {
    const partition = kind === "partition";
    return { ackWaitMs: this.opts.ackWaitSeconds * 1000, maxAckPending: partition ? this.opts.maxAckPending : 1, ackAll: partition };
  }

  /** The partition leases (the bucket is created on first use; a failure is retried on the next call). */
  leases(): Promise<PartitionLeases> {
    this.#leases ??= PartitionLeases.open(this.js, leaseBucket(this.opts.prefix), { ttlMs: this.opts.leaseSeconds * 1000, owner: this.owner, logger: this.opts.logger }).catch((err) => {
      this.#leases = undefined;
      throw err;
    });
    return this.#leases;
  }

  deadLetter(consumer: string, m: JsMsg, error: Error, attempts: number): Promise<void> {
    return writeDeadLetter(this.#dlq, consumer, m, error, attempts);
  }

  /** The delay before retry `n` (1-based): entry n of `backoffMs`, the last one repeating. */
  backoff(n: number): number {
    const b = this.opts.backoffMs;
    return b[Math.min(Math.max(n, 1), b.length) - 1] ?? 1000;
  }

  /** `p`, or a rejection with `message` after the request timeout. */
  within<T>(p: Promise<T>, message: string): Promise<T> {
    let t: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(message)), this.opts.requestTimeoutMs)));
    return Promise.race([p, timeout]).finally(() => clearTimeout(t));
  }

  #ensure(name: string, subjects: string[], s: StreamSettings): Promise<void> {
    let p = this.#streams.get(name);
    if (!p) {
      p = ensureStream(this.jsm, name, subjects, s).catch((err) => {
        this.#streams.delete(name);
        throw err;
      });
      this.#streams.set(name, p);
    }
    return p;
  }
}
