import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { SHARED_NATS } from "../../../test/support/nats-server.ts";
import { waitFor } from "../../../test/support/platform.ts";
import { connectNats } from "./transport.ts";

/** The socket under a connection (nats.js keeps it on its transport), with its writes counted. */
function countWrites(nc: NatsConnection): { writes: number } {
  const socket = (nc as unknown as { protocol: { transport: { socket: Socket } } }).protocol.transport.socket;
  const counted = { writes: 0 };
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]) => {
    counted.writes++;
    return write(...args);
  }) as typeof socket.write;
  return counted;
}

describe("NATS transport batched per turn", () => {
  const open: NatsConnection[] = [];
  afterEach(async () => {
    for (const nc of open.splice(0)) if (!nc.isClosed()) await nc.close();
  });

  /** A plain connection reading a fresh subject (subscribed once this resolves), and one to write it with the batched transport. */
  async function pair(): Promise<{ subject: string; got: string[]; nc: NatsConnection }> {
    const subject = `t.batch.${randomUUID()}`;
    const reader = await connect({ servers: SHARED_NATS });
    open.push(reader);
    const got: string[] = [];
    reader.subscribe(subject, { callback: (_err, m) => void got.push(m.string()) });
    await reader.flush();
    const nc = await connectNats({ servers: SHARED_NATS });
    open.push(nc);
    return { subject, got, nc };
  }

  it("writes what one turn sends in one socket write, every message arriving in order", async () => {
    const { subject, got, nc } = await pair();
    await nc.flush();
    const counted = countWrites(nc);
    // One turn, each publish after an await, as a busy turn's consumers and relays send: nats.js
    // alone writes between them (its flush is a microtask queued by the first command of each).
    for (let i = 0; i < 20; i++) {
      nc.publish(subject, String(i));
      await Promise.resolve();
    }
    await waitFor(() => got.length === 20, { what: "the 20 messages" });
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(counted.writes).toBe(1);
  });

  it("a drain writes what was queued before it, and a flush waits for the write", async () => {
    const { subject, got, nc } = await pair();
    nc.publish(subject, "flushed");
    // The server answers the flush's PING after the publish: it has the message by then.
    await nc.flush();
    await waitFor(() => got.length === 1, { what: "the flushed message" });
    expect(got).toEqual(["flushed"]);
    nc.publish(subject, "last words");
    await nc.drain();
    await waitFor(() => got.length === 2, { what: "the message published just before the drain" });
    expect(got).toEqual(["flushed", "last words"]);
  });
});
