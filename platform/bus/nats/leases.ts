import { Kvm, type KV } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "../../observability/logger.ts";

/** A lease this instance holds. `lost` aborts when it can no longer be sure it still holds it. */
export interface Lease {
  readonly key: string;
  readonly lost: AbortSignal;
  /** Stops renewing and deletes the entry (if still ours), so a standby takes over at once. */
  release(): Promise<void>;
}

/**
 * Exclusive leases in a NATS KV bucket (ADR 0006, "one reader per partition"): a key holds the
 * owner's id; the bucket's TTL expires an entry its owner stopped renewing. `create` succeeds only
 * when the key is absent (never held, released, or expired), `update` only at the revision the
 * owner last wrote — so at most one instance holds a key, and a renewal after someone else took it
 * fails. The owner renews every TTL/3 and gives the lease up (`lost`) when a renewal fails or it
 * has not renewed for a TTL (NATS unreachable: the entry may have expired on the server).
 *
 * @example const leases = await PartitionLeases.open(js, "SELARAS_LEASES", { ttlMs: 10_000, owner, logger });
 *          const lease = await leases.acquire("orders_history.SELARAS_ORDERS_V1_0", signal);
 */
export class PartitionLeases {
  readonly #held = new Set<Lease>();
  /** Groups this process is a member of, and the last listing of members and pause holders. */
  readonly #groups = new Set<string>();
  #view: { members: Map<string, number>; pausers: Map<string, string> } = { members: new Map(), pausers: new Map() };
  #refreshedAt = 0;
  #refreshing: Promise<void> | undefined;

  private constructor(
    private readonly kv: KV,
    readonly opts: { readonly ttlMs: number; readonly owner: string; readonly logger: Logger },
  ) {}

  /** Opens the bucket, creating it with `ttlMs` if absent (an existing bucket keeps its TTL: a warning says so if it differs). */
  static async open(js: JetStreamClient, bucket: string, opts: { ttlMs: number; owner: string; logger: Logger }): Promise<PartitionLeases> {
    const kvm = new Kvm(js);
    let kv: KV;
    try {
      kv = await kvm.create(bucket, { history: 1, ttl: opts.ttlMs });
    } catch (err) {
      // Created by another process with other settings: use it as it is.
      kv = await kvm.open(bucket).catch(() => {
        throw err;
      });
      const ttl = (await kv.status()).ttl;
      if (ttl !== opts.ttlMs) opts.logger.warn("NATS lease bucket has another TTL than configured; using the bucket's", { bucket, bucketTtlMs: ttl, configuredMs: opts.ttlMs });
      return new PartitionLeases(kv, { ...opts, ttlMs: ttl || opts.ttlMs });
    }
    return new PartitionLeases(kv, opts);
  }

  /**
   * Waits until `key` is free (and `gate` lets this claim in) and takes it; resolves undefined
   * when `signal` aborts first. Polls every TTL/5 while another instance holds it (at most a TTL
   * after that holder died, at once after it released). `gate.enter` is asked before each claim
   * and `gate.leave(taken)` called as soon as that claim is decided, so a caller claiming several
   * keys at once can count the claims in flight (`enter` false: not now, ask again after the next
   * poll).
   */
  async acquire(key: string, signal: AbortSignal, gate: LeaseGate = OPEN): Promise<Lease | undefined> {
    const { ttlMs, owner, logger } = this.opts;
    const pollMs = Math.max(50, ttlMs / 5);
    let waiting = false;
    while (!signal.aborted) {
      if (!gate.enter()) {
        await sleep(pollMs, signal);
        continue;
      }
      let revision: number;
      try {
        revision = await this.kv.create(key, owner);
      } catch (err) {
        gate.leave(false);
        if (!isTaken(err)) logger.warn("could not claim a partition lease; retrying", { key, err });
        else if (!waiting) logger.debug("partition lease held by another instance; standing by", { key });
        waiting = true;
        await sleep(pollMs, signal);
        continue;
      }
      if (waiting) logger.info("took over a partition lease", { key, owner });
      const lease = this.#hold(key, revision);
      gate.leave(true);
      return lease;
    }
    return undefined;
  }

  /**
   * Keeps this instance a live member of `group` and says how many live members the group has
   * (what a fair share of its partitions is computed from) and which instance, if any, holds its
   * pause. One refresh serves every group of the process: a put per group (renewing membership,
   * which expires with the bucket's TTL) and one listing of members and pauses, at most every
   * TTL/3.
   */
  async view(group: string): Promise<{ members: number; pausedBy: string | undefined }> {
    this.#groups.add(group);
    if (!this.#view.members.has(group) || Date.now() - this.#refreshedAt >= this.opts.ttlMs / 3) {
      this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
      await this.#refreshing;
    }
    return { members: Math.max(this.#view.members.get(group) ?? 0, 1), pausedBy: this.#view.pausers.get(group) };
  }

  async #refresh(): Promise<void> {
    await Promise.all([...this.#groups].map((g) => this.kv.put(`${MEMBERS}.${g}.${this.#memberToken}`, "")));
    const members = new Map<string, number>();
    for await (const key of await this.kv.keys(`${MEMBERS}.>`)) {
      const group = key.split(".")[1]!;
      members.set(group, (members.get(group) ?? 0) + 1);
    }
    const pausers = new Map<string, string>();
    for await (const key of await this.kv.keys(`${PAUSE}.>`)) {
      const holder = await this.holder(key);
      if (holder) pausers.set(key.slice(PAUSE.length + 1), holder);
    }
    this.#view = { members, pausers };
    this.#refreshedAt = Date.now();
  }

  /** The key of `group`'s pause (see `NatsSubscription.pause`). */
  static pauseKey(group: string): string {
    return `${PAUSE}.${group}`;
  }

  /** Who holds `key` now, if anyone. */
  async holder(key: string): Promise<string | undefined> {
    const entry = await this.kv.get(key);
    return entry && entry.operation === "PUT" ? entry.string() : undefined;
  }

  /** Leaves `group` (a clean stop: the others take its share without waiting for the TTL). */
  async retire(group: string): Promise<void> {
    this.#groups.delete(group);
    await this.kv.delete(`${MEMBERS}.${group}.${this.#memberToken}`).catch(() => {});
  }

  get #memberToken(): string {
    return this.opts.owner.replace(/[^A-Za-z0-9_-]/g, "_");
  }

  /** Releases every lease held (shutdown). */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.#held].map((l) => l.release()));
  }

  #hold(key: string, firstRevision: number): Lease {
    const { ttlMs, owner, logger } = this.opts;
    const lost = new AbortController();
    let revision = firstRevision;
    let renewedAt = Date.now();
    let renewing: Promise<void> = Promise.resolve();
    const renew = async () => {
      try {
        revision = await this.kv.update(key, owner, revision);
        renewedAt = Date.now();
      } catch (err) {
        if (isTaken(err)) {
          logger.warn("partition lease taken by another instance; stopping here", { key, owner });
          lost.abort();
        } else if (Date.now() - renewedAt >= ttlMs) {
          logger.warn("could not renew a partition lease within its TTL; giving it up", { key, owner, err });
          lost.abort();
        }
      }
    };
    const timer = setInterval(() => {
      if (!lost.signal.aborted) renewing = renew();
    }, Math.max(20, ttlMs / 3));
    lost.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
    const lease: Lease = {
      key,
      lost: lost.signal,
      release: async () => {
        if (!this.#held.delete(lease)) return;
        const wasLost = lost.signal.aborted;
        lost.abort();
        await renewing;
        if (wasLost) return;
        // Only if still ours: the entry is at the revision this owner last wrote.
        await this.kv.delete(key, { previousSeq: revision }).catch((err) => logger.debug("could not release a partition lease; it expires by itself", { key, err }));
      },
    };
    this.#held.add(lease);
    return lease;
  }
}

/**
 * Lets a claim of `PartitionLeases.acquire` in, or not yet. `leave` follows each `enter` that
 * returned true, in the same turn as the claim's outcome (`taken`: the lease is now held), so the
 * caller can count a taken claim as held with nothing running in between.
 */
export interface LeaseGate {
  enter(): boolean;
  leave(taken: boolean): void;
}

const OPEN: LeaseGate = { enter: () => true, leave: () => {} };

/**
 * Member keys `members.<group>.<owner>` and pause keys `pause.<group>`; lease keys never start
 * with either (they are `<durable>.<stream>`, and a durable name always holds a `_`).
 */
const MEMBERS = "members";
const PAUSE = "pause";

/** The KV refused a create (key exists) or an update (wrong last sequence): another owner. */
function isTaken(err: unknown): boolean {
  // Create and update are both expected-last-sequence writes.
  return err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
