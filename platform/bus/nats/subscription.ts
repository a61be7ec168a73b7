import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import { failedDelivery, type BusPosition, type Delivery, type DeliveryResult, type SubscribeOptions } from "../types.ts";
import { resetToAckFloor } from "./admin.ts";
import type { NatsBus } from "./bus.ts";
import { envelopeOf, H } from "./envelope.ts";
import { PartitionLeases, type Lease, type LeaseGate } from "./leases.ts";
import { consumerToken, eventStream, redriveStream, redriveSubject, splitType } from "./names.ts";

/** One durable consumer a subscription reads: a partition stream of a package, or its redrive subject. */
interface Source {
  readonly stream: string;
  readonly durable: string;
  /** "" reads the whole stream. */
  readonly filter: string;
  readonly redrive: boolean;
}

/**
 * One subscription on the NATS bus: a durable consumer in each partition stream of each package
 * it handles, plus one on its redrive subject, each read by its own loop.
 *
 * A partition's consumer is read by one instance at a time, the holder of its lease
 * (`PartitionLeases`); the others stand by. The holder keeps up to `maxAckPending` messages in
 * flight and hands them to the handler in batches — whatever arrived while the previous batch
 * committed, up to `batchSize` — one transaction per batch. It acks after the handler's result is
 * ok. A failure holds the partition: the failed message is tried again here after the backoff
 * delay, nothing after it overtakes it, and after `maxDeliver` attempts it is dead-lettered and
 * terminated. A new holder first puts the consumer back to its ack floor if the previous one left
 * messages unacked, so they come again in stream order (see `resetToAckFloor`).
 *
 * The redrive consumer is read by every instance with one message in flight.
 *
 * Event consumers read their whole stream and skip the types they do not handle: NATS 2.9 allows
 * one filter subject, and a filtered consumer makes a 2.9 file store scan its block for every
 * delivery (see ADR 0006).
 */
export class NatsSubscription {
  readonly consumer: string;
  readonly #types: Set<string>;
  /** `<pkg>.<Message>` of each wanted type, as its subject carries it: other types are skipped without parsing headers. */
  readonly #subjectTypes: Set<string>;
  readonly #sources: Source[];
  #running = true;
  #main: Promise<void> | undefined;
  #ready: Promise<void>;
  #setReady!: () => void;
  readonly #iterators = new Set<ConsumerMessages>();
  readonly #sleeps = new Set<() => void>();
  /** While paused, a delivered message is held (unacked) until `resume`: nothing is handled. */
  #paused = false;
  #resumed: Promise<void> = Promise.resolve();
  #resume: () => void = () => {};
  /** Messages being handled right now; `pause` waits for none. */
  #inFlight = 0;
  #idleWaiters: Array<() => void> = [];
  /** Per event stream, the highest stream seq this instance acked or terminated. */
  readonly #lastDone = new Map<string, number>();
  /** Aborted by `stop`: ends lease waits and backoff sleeps. */
  readonly #stopping = new AbortController();
  /** Local attempts of the message a partition is stuck on, by stream and seq. */
  readonly #attempts = new Map<string, number>();
  /** Partitions this instance reads now, and those it is handing over to another instance. */
  readonly #held = new Set<Source>();
  readonly #yielding = new Set<Source>();
  /** Live instances of this subscription (their own count included), from the lease bucket. */
  #members = 1;
  /**
   * Resolves once the first listing of members is in (or the subscription stops): partition
   * readers wait for it, so an instance joining others does not take every partition on a guess
   * of one member and hand the excess back a moment later — each handed-back partition would
   * deliver its unacked events again.
   */
  readonly #membersKnown: Promise<void>;
  #knowMembers = () => {};
  /** Held while this instance pauses the subscription for every instance (`pause`). */
  #pauseLease: Lease | undefined;
  /** Another instance pauses the subscription: this one reads no partition meanwhile. */
  #pausedElsewhere = false;
  /** Wakes each partition reader waiting for messages (to see that it is to hand over). */
  readonly #wakers = new Set<() => void>();

  constructor(
    private readonly bus: NatsBus,
    private readonly opts: SubscribeOptions,
  ) {
    this.consumer = opts.consumer;
    this.#types = new Set(opts.types);
    this.#subjectTypes = new Set(opts.types.map((t) => {
      const { pkg, name } = splitType(t);
      return `${pkg}.${name}`;
    }));
    this.#ready = new Promise((r) => (this.#setReady = r));
    this.#membersKnown = new Promise((r) => (this.#knowMembers = r));
    this.#stopping.signal.addEventListener("abort", () => this.#knowMembers(), { once: true });
    const { prefix, partitions } = bus.opts;
    const durable = consumerToken(this.consumer);
    this.#sources = [];
    for (const pkg of this.packages) {
      for (let p = 0; p < partitions; p++) this.#sources.push({ stream: eventStream(prefix, pkg, p), durable, filter: "", redrive: false });
    }
    this.#sources.push({ stream: redriveStream(prefix), durable, filter: redriveSubject(prefix, this.consumer), redrive: true });
  }

  /** The package streams this subscription reads. */
  get packages(): string[] {
    return [...new Set([...this.#types].map((t) => splitType(t).pkg))];
  }

  start(): void {
    this.#main = this.#run().catch((err) => this.bus.opts.logger.error("bus subscription crashed", { consumer: this.consumer, err }));
  }

  /** Stops the loops; resolves once the message in flight was handled and acked. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stopping.abort();
    this.resume();
    for (const wake of this.#sleeps) wake();
    for (const it of this.#iterators) it.stop();
    await this.#main;
  }

  /**
   * Stops handling once the messages in flight are handled (a message delivered meanwhile is held,
   * unacked, until `resume`), then waits until the server's ack floors include every ack this
   * instance sent — acks are fire-and-forget — and resolves with them: the checkpoint.
   *
   * Every instance of the subscription stops, not only this one: this instance first takes the
   * pause lease (`pause.<durable>` in the lease bucket); the others see it within two thirds of
   * `leaseSeconds`, hand their partitions over and take none, so this instance reads — and holds
   * still — every partition. Fails if another instance holds the pause, or the partitions do not
   * all come over in time (3 × `leaseSeconds`).
   */
  async pause(): Promise<BusPosition> {
    if (!this.#pauseLease) {
      const leases = await this.bus.leases();
      const gatherMs = 3 * this.bus.opts.leaseSeconds * 1000 + this.bus.opts.requestTimeoutMs;
      const lease = await leases.acquire(PartitionLeases.pauseKey(consumerToken(this.consumer)), AbortSignal.any([this.#stopping.signal, AbortSignal.timeout(gatherMs)]));
      if (!lease) throw new Error(`consumer ${this.consumer}: another instance holds its pause (a replay running elsewhere?)`);
      this.#pauseLease = lease;
      const partitions = this.#sources.filter((s) => !s.redrive).length;
      for (const deadline = Date.now() + gatherMs; this.#held.size < partitions; ) {
        if (Date.now() > deadline || lease.lost.aborted) {
          this.resume();
          throw new Error(`consumer ${this.consumer}: only ${this.#held.size} of its ${partitions} partitions came over to this instance in time`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    if (!this.#paused) {
      this.#paused = true;
      this.#resumed = new Promise((r) => (this.#resume = r));
    }
    if (this.#inFlight > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
    for (const deadline = Date.now() + this.bus.opts.requestTimeoutMs; ; ) {
      const position = await this.position();
      if ([...this.#lastDone].every(([stream, seq]) => (position[stream] ?? 0) >= seq)) return position;
      if (Date.now() > deadline) throw new Error(`consumer ${this.consumer}: NATS did not confirm its acks in time`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Handles again, and lets the other instances take their share of partitions back. */
  resume(): void {
    this.#paused = false;
    this.#resume();
    const lease = this.#pauseLease;
    this.#pauseLease = undefined;
    void lease?.release();
  }

  /** The ack floor of each event stream: the last event every instance has passed. */
  async position(): Promise<BusPosition> {
    await this.bus.within(this.#ready, `consumer ${this.consumer} is not set up on NATS yet`);
    const events = this.#sources.filter((s) => !s.redrive);
    const infos = await Promise.all(events.map((s) => this.bus.jsm.consumers.info(s.stream, s.durable)));
    return Object.fromEntries(events.map((s, i) => [s.stream, infos[i]!.ack_floor.stream_seq]));
  }

  /** Events not yet processed: pending plus in flight, over every consumer of this subscription. */
  async lag(): Promise<number> {
    await this.bus.within(this.#ready, `consumer ${this.consumer} is not set up on NATS yet`);
    const infos = await Promise.all(this.#sources.map((s) => this.bus.jsm.consumers.info(s.stream, s.durable)));
    return infos.reduce((n, i) => n + i.num_pending + i.num_ack_pending, 0);
  }

  async #run(): Promise<void> {
    // Streams and consumers are ensured before reading; while NATS is away this retries.
    for (let failures = 0; this.#running; failures++) {
      try {
        await this.#ensure();
        break;
      } catch (err) {
        this.bus.opts.logger.warn("could not set up NATS consumer; retrying", { consumer: this.consumer, err });
        await this.#sleep(this.bus.backoff(failures + 1));
      }
    }
    if (!this.#running) return;
    this.#setReady();
    await Promise.all([this.#balance(), ...this.#sources.map((s) => (s.redrive ? this.#consume(s) : this.#consumeLeased(s)))]);
  }

  async #ensure(): Promise<void> {
    await Promise.all([...this.packages.map((pkg) => this.bus.ensurePackageStream(pkg)), this.bus.ensureSystemStreams()]);
    await Promise.all(this.#sources.map((s) => this.bus.ensureConsumer(s.stream, s.durable, s.filter, s.redrive ? "redrive" : "partition")));
  }

  async #consume(source: Source): Promise<void> {
    for (let failures = 0; this.#running; ) {
      try {
        if (failures > 0) await this.bus.ensureConsumer(source.stream, source.durable, source.filter, "redrive");
        const messages = await (await this.bus.js.consumers.get(source.stream, source.durable)).consume({ max_messages: 64 });
        this.#iterators.add(messages);
        try {
          if (!this.#running) messages.stop();
          for await (const m of messages) {
            // Delivered while stopping: released at once rather than blocking the partition until ack_wait.
            if (this.#paused && this.#running) await this.#hold(m);
            if (!this.#running) m.nak();
            else await this.#handle(m, source);
            failures = 0;
          }
        } finally {
          this.#iterators.delete(messages);
        }
        if (!this.#running) return;
        throw new Error("consume ended");
      } catch (err) {
        if (!this.#running) return;
        failures++;
        this.bus.opts.logger.warn("NATS consumer stopped; resuming", { consumer: this.consumer, stream: source.stream, durable: source.durable, err });
        await this.#sleep(this.bus.backoff(failures));
      }
    }
  }

  /**
   * A partition stream: stands by until this instance holds the partition's lease, then reads it
   * (`#readOwned`) until the lease is lost or the subscription stops, and stands by again.
   */
  async #consumeLeased(source: Source): Promise<void> {
    const key = `${source.durable}.${source.stream}`;
    await this.#membersKnown;
    for (let failures = 0; this.#running; ) {
      let lease: Lease | undefined;
      try {
        lease = await (await this.bus.leases()).acquire(key, this.#stopping.signal, this.#shareGate(source));
        if (!lease) return;
        const reset = await resetToAckFloor(this.bus.jsm, source.stream, source.durable, source.filter, this.bus.consumerSettings("partition"));
        if (reset) this.bus.opts.logger.info("partition taken over with events unacked by its previous reader: delivering them again from the ack floor", { consumer: this.consumer, stream: source.stream });
        await this.#readOwned(source, lease);
        failures = 0;
      } catch (err) {
        if (!this.#running) return;
        failures++;
        this.bus.opts.logger.warn("NATS partition reader stopped; resuming", { consumer: this.consumer, stream: source.stream, err });
        await this.#sleep(this.bus.backoff(failures));
      } finally {
        this.#held.delete(source);
        this.#yielding.delete(source);
        await lease?.release();
      }
    }
  }

  /**
   * Lets `source`'s reader claim its lease while the partitions held and being claimed stay under
   * the fair share: the readers claim concurrently, and counting only those held would let each
   * of them in at once. A taken claim becomes held in the same turn.
   */
  #shareGate(source: Source): LeaseGate {
    return {
      enter: () => {
        if (this.#held.size + this.#claiming >= this.#fairShare) return false;
        this.#claiming++;
        return true;
      },
      leave: (taken) => {
        this.#claiming--;
        if (taken) this.#held.add(source);
      },
    };
  }
  #claiming = 0;

  /** Partitions per instance: the event streams spread over the live instances, rounded up. */
  get #fairShare(): number {
    const partitions = this.#sources.filter((s) => !s.redrive).length;
    if (this.#pauseLease) return partitions;
    if (this.#pausedElsewhere) return 0;
    return Math.ceil(partitions / this.#members);
  }

  /** How many partitions this instance reads now. */
  get partitionsHeld(): number {
    return this.#held.size;
  }

  /**
   * Keeps this instance announced in the lease bucket and its share of partitions fair: an
   * instance holding more than its share (it started first, or another one just joined) hands the
   * excess over — it finishes the batch in flight, releases the queued messages and the lease —
   * and takes no partition while it holds its share.
   */
  async #balance(): Promise<void> {
    const group = consumerToken(this.consumer);
    const every = Math.max(50, (this.bus.opts.leaseSeconds * 1000) / 3);
    try {
      while (this.#running) {
        try {
          const { members, pausedBy } = await (await this.bus.leases()).view(group);
          this.#members = members;
          this.#pausedElsewhere = pausedBy !== undefined && pausedBy !== this.bus.owner;
          this.#knowMembers();
          let excess = this.#held.size - this.#yielding.size - this.#fairShare;
          for (const source of this.#held) {
            if (excess <= 0) break;
            if (this.#yielding.has(source)) continue;
            this.#yielding.add(source);
            for (const wake of this.#wakers) wake();
            excess--;
          }
        } catch (err) {
          this.bus.opts.logger.debug("could not announce this instance in the lease bucket; retrying", { consumer: this.consumer, err });
        }
        await this.#sleep(every);
      }
    } finally {
      await (await this.bus.leases().catch(() => undefined))?.retire(group);
    }
  }

  /**
   * Reads a partition whose lease this instance holds: a pump moves delivered messages into a
   * queue, and the handler takes what is queued as one batch. Returns when the subscription stops
   * (what is queued is nak'ed, for the next holder) or the lease is lost (left as it is: the next
   * holder resets the consumer).
   */
  async #readOwned(source: Source, lease: Lease): Promise<void> {
    const { maxAckPending, ackWaitSeconds } = this.bus.opts;
    const batchSize = this.bus.opts.batchSize;
    const messages = await (await this.bus.js.consumers.get(source.stream, source.durable)).consume({ max_messages: maxAckPending });
    this.#iterators.add(messages);
    const queue: JsMsg[] = [];
    let wake: (() => void) | undefined;
    const signal = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let pumpError: unknown;
    let pumpDone = false;
    const pump = (async () => {
      try {
        for await (const m of messages) {
          // A message the server delivers again (its ack wait passed while held) replaces the held copy.
          const at = m.redelivered ? queue.findIndex((q) => q.seq === m.seq) : -1;
          if (at >= 0) queue[at] = m;
          else queue.push(m);
          signal();
        }
      } catch (err) {
        pumpError = err;
      } finally {
        pumpDone = true;
        signal();
      }
    })();
    // A lingering reader (`lingerMs`) waits for a full batch, at most that long, once per batch.
    const { lingerMs } = this.opts;
    let lingered = false;
    const linger = (ms: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (queue.length >= batchSize || pumpDone || !this.#running || lease.lost.aborted || this.#yielding.has(source)) done();
          else wake = check;
        };
        const done = () => {
          clearTimeout(timer);
          if (wake === check) wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, ms);
        wake = check;
      });
    // Held messages would be delivered again after the ack wait: tell the server they are worked on.
    let inBatch: readonly JsMsg[] = [];
    const keepalive = setInterval(() => {
      for (const m of queue) m.working();
      for (const m of inBatch) m.working();
    }, Math.max(100, (ackWaitSeconds * 1000) / 3));
    const onLost = () => {
      messages.stop();
      signal();
    };
    lease.lost.addEventListener("abort", onLost, { once: true });
    try {
      this.#wakers.add(signal);
      while (this.#running && !lease.lost.aborted && !this.#yielding.has(source)) {
        if (this.#paused) {
          await Promise.race([this.#resumed, aborted(lease.lost), aborted(this.#stopping.signal)]);
          continue;
        }
        if (queue.length === 0) {
          if (pumpDone) break;
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        if (lingerMs && !lingered && queue.length < batchSize) {
          lingered = true;
          await linger(lingerMs);
          continue; // looks again: stopping, pausing or handing over may have come meanwhile
        }
        inBatch = queue.slice(0, batchSize);
        this.#inFlight++;
        let outcome: { done: number; retryInMs?: number };
        try {
          outcome = await this.#processBatch(inBatch, source);
        } finally {
          inBatch = [];
          if (--this.#inFlight === 0) for (const w of this.#idleWaiters.splice(0)) w();
        }
        queue.splice(0, outcome.done);
        lingered = false; // the next batch lingers again
        if (outcome.retryInMs !== undefined) await Promise.race([this.#sleep(outcome.retryInMs), aborted(lease.lost)]);
      }
    } finally {
      this.#wakers.delete(signal);
      clearInterval(keepalive);
      lease.lost.removeEventListener("abort", onLost);
      messages.stop();
      this.#iterators.delete(messages);
      await pump;
      // Stopping or handing over: what is queued goes back at once, in order, for whoever reads next.
      if (!lease.lost.aborted) for (const m of queue) m.nak();
    }
    const handedOver = !this.#running || lease.lost.aborted || this.#yielding.has(source);
    if (!handedOver) throw pumpError ?? new Error("consume ended");
  }

  /**
   * Hands a batch to the handler. Acks (or terminates) from the front up to the first failure;
   * returns how many messages are done and, after a failure, when to try the failed one again.
   */
  async #processBatch(batch: readonly JsMsg[], source: Source): Promise<{ done: number; retryInMs?: number }> {
    const log = this.bus.opts.logger;
    const deliveries: Delivery[] = [];
    const at: number[] = []; // batch index of each delivery
    const poison = new Set<number>();
    const eventsHead = `${this.bus.opts.prefix}.events.`;
    batch.forEach((m, i) => {
      // `<prefix>.events.<pkg>.<Message>.<partition>`: a type this subscription does not handle
      // is skipped on its subject alone; its headers are never parsed.
      if (m.subject.startsWith(eventsHead) && !this.#subjectTypes.has(m.subject.slice(eventsHead.length, m.subject.lastIndexOf(".")))) return;
      let envelope;
      try {
        envelope = envelopeOf(m.headers, m.data);
      } catch (err) {
        log.error("message on a bus subject is not a Selaras event; terminated", { consumer: this.consumer, subject: m.subject, seq: m.seq, err });
        poison.add(i); // terminated below, in order
        return;
      }
      // The consumer reads its whole partition stream: types it does not handle are skipped.
      if (!this.#types.has(envelope.type)) return;
      const key = `${source.stream}:${m.seq}`;
      deliveries.push({ envelope, seq: m.seq, attempt: (this.#attempts.get(key) ?? 0) + 1 });
      at.push(i);
    });
    let results: readonly DeliveryResult[] = [];
    if (deliveries.length > 0) {
      try {
        results = await this.opts.handle(deliveries);
      } catch (err) {
        results = [failedDelivery(err)];
      }
    }
    const failedAt = deliveries.findIndex((_, i) => !results[i]?.ok);
    const end = failedAt < 0 ? batch.length : at[failedAt]!;
    // Ack-all: one ack covers every message before it; a poison message is terminated on its own.
    let lastAck: JsMsg | undefined;
    for (let i = 0; i < end; i++) {
      const m = batch[i]!;
      if (poison.has(i)) m.term();
      else lastAck = m;
      this.#attempts.delete(`${source.stream}:${m.seq}`);
      this.#done(source, m);
    }
    lastAck?.ack();
    if (failedAt < 0) return { done: batch.length };

    const m = batch[end]!;
    const d = deliveries[failedAt]!;
    const result = results[failedAt];
    const error = result && !result.ok ? result.error : new Error("no result for delivery");
    const key = `${source.stream}:${m.seq}`;
    this.#attempts.set(key, d.attempt);
    if (d.attempt >= this.bus.opts.maxDeliver) {
      try {
        await this.bus.deadLetter(this.consumer, m, error, d.attempt);
        log.error("event dead-lettered", { consumer: this.consumer, seq: m.seq, type: d.envelope.type, eventId: d.envelope.id, attempts: d.attempt, err: error });
        m.term();
        this.#attempts.delete(key);
        this.#done(source, m);
        return { done: end + 1 };
      } catch (dlqErr) {
        log.error("could not dead-letter an event; will retry", { consumer: this.consumer, seq: m.seq, eventId: d.envelope.id, err: dlqErr });
      }
    } else {
      log.warn("event delivery failed; will retry", { consumer: this.consumer, seq: m.seq, type: d.envelope.type, attempt: d.attempt, err: error });
    }
    return { done: end, retryInMs: this.bus.backoff(d.attempt) };
  }

  /** Keeps a message delivered while paused until `resume`, telling the server it is being worked on. */
  async #hold(m: JsMsg): Promise<void> {
    const ackWaitMs = this.bus.opts.ackWaitSeconds * 1000;
    const timer = setInterval(() => m.working(), Math.max(ackWaitMs / 3, 100));
    try {
      await this.#resumed;
    } finally {
      clearInterval(timer);
    }
  }

  /** `#process` counted as in flight, so that `pause` can wait for it. */
  async #handle(m: JsMsg, source: Source): Promise<void> {
    this.#inFlight++;
    try {
      await this.#process(m, source);
    } finally {
      if (--this.#inFlight === 0) for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  /** Remembers an event stream's message as passed (acked or terminated), for `pause`. */
  #done(source: Source, m: JsMsg): void {
    if (!source.redrive) this.#lastDone.set(source.stream, Math.max(this.#lastDone.get(source.stream) ?? 0, m.seq));
  }

  async #process(m: JsMsg, source: Source): Promise<void> {
    const log = this.bus.opts.logger;
    let envelope;
    try {
      envelope = envelopeOf(m.headers, m.data);
    } catch (err) {
      log.error("message on a bus subject is not a Selaras event; terminated", { consumer: this.consumer, subject: m.subject, seq: m.seq, err });
      m.term();
      this.#done(source, m);
      return;
    }
    // The consumer reads its whole partition stream: types it does not handle are skipped.
    if (!this.#types.has(envelope.type)) {
      m.ack();
      this.#done(source, m);
      return;
    }
    const attempt = m.info.deliveryCount;
    const seq = source.redrive ? Number(m.headers?.get(H.streamSeq)) || m.seq : m.seq;
    let result: DeliveryResult | undefined;
    try {
      [result] = await this.opts.handle([{ envelope, seq, attempt }]);
    } catch (err) {
      result = failedDelivery(err);
    }
    if (result?.ok) {
      m.ack();
      this.#done(source, m);
      return;
    }
    const error = result && !result.ok ? result.error : new Error("no result for delivery");
    const { maxDeliver } = this.bus.opts;
    if (attempt >= maxDeliver) {
      try {
        await this.bus.deadLetter(this.consumer, m, error, attempt);
        log.error("event dead-lettered", { consumer: this.consumer, seq, type: envelope.type, eventId: envelope.id, attempts: attempt, err: error });
        m.term();
        this.#done(source, m);
        return;
      } catch (dlqErr) {
        log.error("could not dead-letter an event; will retry", { consumer: this.consumer, seq, eventId: envelope.id, err: dlqErr });
      }
    } else {
      log.warn("event delivery failed; will retry", { consumer: this.consumer, seq, type: envelope.type, attempt, err: error });
    }
    m.nak(this.bus.backoff(attempt));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#sleeps.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#sleeps.add(done);
    });
  }
}

/** Resolves when `signal` aborts; one promise per signal, so waiting on it again adds no listener. */
const abortedOf = new WeakMap<AbortSignal, Promise<void>>();
function aborted(signal: AbortSignal): Promise<void> {
  let p = abortedOf.get(signal);
  if (!p) {
    p = new Promise((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    abortedOf.set(signal, p);
  }
  return p;
}
