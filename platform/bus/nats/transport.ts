import { NatsConnectionImpl, setTransportFactory, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { NodeTransport, nodeResolveHost } from "@nats-io/transport-node/lib/node_transport.js";

/**
 * The Node transport, writing what one event-loop turn sends in one socket write.
 *
 * nats.js writes its outbound buffer at the end of each microtask checkpoint, so the commands of
 * one busy turn — the acks of several consumers' batches, a relay's publishes, pull requests —
 * go out in many small writes. Each write to a loopback socket also runs the receiving side's
 * TCP path in the writer's thread: one of the costliest calls a NATS-bound process makes. Here
 * the frames of a turn are queued and written at the next `setImmediate`, in order, as one
 * buffer: ~12 % less server CPU per order for the full system on Postgres + NATS (docs/benchmarks.md,
 * runs S; ADR 0019), for up to one turn of added latency per command.
 */
class TurnBatchedTransport extends NodeTransport {
  #frames: Uint8Array[] = [];
  #scheduled = false;

  override send(frame: Uint8Array): void {
    this.#frames.push(frame);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => void this.#write());
  }

  /** Writes the queued frames; resolves once the socket took them (never rejects: as `send`). */
  #write(): Promise<void> {
    this.#scheduled = false;
    if (this.#frames.length === 0) return Promise.resolve();
    const frames = this.#frames;
    this.#frames = [];
    return this._send(frames.length === 1 ? frames[0]! : Buffer.concat(frames)).catch(() => {});
  }

  // A close writes what is queued first, and waits for it: the socket is destroyed right after,
  // which drops what it has not written yet (the last publishes before a close, a drain's commands).
  override async close(err?: Error): Promise<void> {
    await this.#write();
    return super.close(err);
  }

  override disconnect(): void {
    void this.#write();
    super.disconnect();
  }
}

/**
 * `connect` of @nats-io/transport-node, over `TurnBatchedTransport`. The transport factory is
 * global to nats.js; every connection made with this function (and its reconnects) batches,
 * until another `connect` sets the plain transport again — which only costs the batching.
 */
export function connectNats(opts: ConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new TurnBatchedTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(opts);
}
