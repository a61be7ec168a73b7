import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { BusPosition, DeliveryResult, SubscribeOptions } from "../types.ts";
import type { NatsBus } from "./bus.ts";
import { envelopeOf, H } from "./envelope.ts";
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
 * it handles, plus one on its redrive subject, each read by its own loop. Each consumer has one
 * message in flight (`max_ack_pending: 1`), acked after the handler's result is ok; a failure is
 * nak'ed with the backoff delay — the message stays pending, so nothing after it in that
 * partition overtakes it — and after `maxDeliver` deliveries it is dead-lettered and terminated.
 *
 * Event consumers read their whole stream and skip the types they do not handle: NATS 2.9 allows
 * one filter subject, and a filtered consumer with one message in flight makes a 2.9 file store
 * scan its block for every delivery (hundreds of events/s instead of thousands, see ADR 0006).
 */
export class NatsSubscription {
  readonly consumer: string;
  readonly #types: Set<string>;
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

  constructor(
    private readonly bus: NatsBus,
    private readonly opts: SubscribeOptions,
  ) {
    this.consumer = opts.consumer;
    this.#types = new Set(opts.types);
    this.#ready = new Promise((r) => (this.#setReady = r));
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
    this.resume();
    for (const wake of this.#sleeps) wake();
    for (const it of this.#iterators) it.stop();
    await this.#main;
  }

  /**
   * Stops handling once the messages in flight are handled (a message delivered meanwhile is held,
   * unacked, until `resume`), then waits until the server's ack floors include every ack this
   * instance sent — acks are fire-and-forget — and resolves with them: the checkpoint. Other
   * instances of the process are not paused.
   */
  async pause(): Promise<BusPosition> {
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

  resume(): void {
    this.#paused = false;
    this.#resume();
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
    await Promise.all(this.#sources.map((s) => this.#consume(s)));
  }

  async #ensure(): Promise<void> {
    await Promise.all([...this.packages.map((pkg) => this.bus.ensurePackageStream(pkg)), this.bus.ensureSystemStreams()]);
    await Promise.all(this.#sources.map((s) => this.bus.ensureConsumer(s.stream, s.durable, s.filter)));
  }

  async #consume(source: Source): Promise<void> {
    for (let failures = 0; this.#running; ) {
      try {
        if (failures > 0) await this.bus.ensureConsumer(source.stream, source.durable, source.filter);
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
      result = { ok: false, error: err instanceof Error ? err : new Error(String(err)) };
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
