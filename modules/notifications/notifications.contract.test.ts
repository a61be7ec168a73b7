import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotificationService } from "../../gen/notifications/v1/notifications_pb.ts";
import { OrderCancelledSchema, OrderConfirmedSchema } from "../../gen/orders/v1/events_pb.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { newId } from "../../platform/ids.ts";
import type { Platform } from "../../platform/platform.ts";
import { fieldViolations } from "../../platform/rpc/errors.ts";
import { bootModules, testConfig, waitFor } from "../../test/support/platform.ts";
import notifications from "./index.ts";

const CONSUMER = "notifications.outcomes";

/** An envelope as the orders module's outbox relay would put it on the bus. */
function envelope<D extends DescMessage>(schema: D, aggregateId: string, init: MessageInitShape<D>, id = newId()): EventEnvelope {
  return { id, type: schema.typeName, source: "orders", aggregateId, payload: toBinary(schema, create(schema, init)), headers: {}, occurredAt: Date.now() };
}
const confirmed = (orderId: string, customerId: string, totalCents: bigint, id?: string) => envelope(OrderConfirmedSchema, orderId, { orderId, customerId, totalCents }, id);
const cancelled = (orderId: string, customerId: string, reason: string, id?: string) => envelope(OrderCancelledSchema, orderId, { orderId, customerId, reason }, id);

/** Publishes envelopes onto the platform's bus; returns their ids. */
async function publish(platform: Platform, ...events: EventEnvelope[]): Promise<string[]> {
  await platform.bus.publish(events);
  return events.map((e) => e.id);
}

/** Resolves once every event id is in the subscription's inbox, i.e. its effect (if any) is committed. */
function processed(platform: Platform, ids: readonly string[]) {
  const storage = platform.storage("notifications");
  return waitFor(
    async () => {
      const [row] = await storage.queryRaw<{ n: number }>(`SELECT count(*) AS n FROM selaras_inbox WHERE consumer = ? AND event_id IN (${ids.map(() => "?").join(", ")})`, [CONSUMER, ...ids]);
      return Number(row!.n) === ids.length;
    },
    { what: `events ${ids.join(", ")} processed` },
  );
}

describe("notifications contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof NotificationService>>;
  beforeAll(async () => {
    t = await bootModules([notifications]);
    client = t.platform.client(NotificationService);
  });
  afterAll(() => t.dispose());

  const list = async (customerId: string) => (await client.listNotifications({ customerId })).notifications;
  /** The customer's notifications once there are `n` of them. */
  const listOf = (customerId: string, n: number) => waitFor(async () => ((await list(customerId)).length === n ? list(customerId) : undefined), { what: `${n} notifications` });

  it("records one message per outcome, oldest first", async () => {
    const [c, base] = [newId(), newId()];
    const [o1, o2] = [`${base}-1`, `${base}-2`];
    const before = Date.now();
    await processed(t.platform, await publish(t.platform, confirmed(o1, c, 1250n)));
    await publish(t.platform, cancelled(o2, c, "out-of-stock"));

    const got = await listOf(c, 2);
    expect(got.map((n) => ({ orderId: n.orderId, customerId: n.customerId, kind: n.kind, message: n.message }))).toEqual([
      { orderId: o1, customerId: c, kind: "order-confirmed", message: `Your order ${o1} is confirmed: 12.50` },
      { orderId: o2, customerId: c, kind: "order-cancelled", message: `Your order ${o2} was cancelled: an item is out of stock` },
    ]);
    const times = got.map((n) => timestampMs(n.createdAt!));
    expect(times[0]).toBeGreaterThanOrEqual(before);
    expect(times[1]).toBeGreaterThanOrEqual(times[0]!);
    expect(await list(newId())).toEqual([]);
  });

  it("records an outcome once when the same envelope is delivered again", async () => {
    const [c, o] = [newId(), newId()];
    const event = confirmed(o, c, 500n);
    await processed(t.platform, await publish(t.platform, event));
    await processed(t.platform, await publish(t.platform, event));
    expect((await list(c)).map((n) => n.orderId)).toEqual([o]);
  });

  it("records an outcome once when it is published again under a new event id", async () => {
    const [c, o1, o2] = [newId(), newId(), newId()];
    await publish(t.platform, confirmed(o1, c, 999n), cancelled(o2, c, "payment-timeout"));
    const first = await listOf(c, 2);
    // A re-publish by orders carries new ids (and may word the reason differently): the inbox
    // cannot catch it, the (order, kind) key must — and the message first recorded stays.
    const again = await publish(t.platform, confirmed(o1, c, 999n), cancelled(o2, c, "payment-timeout"), cancelled(o2, c, "stock-timeout"));
    await processed(t.platform, again);
    expect(await list(c)).toEqual(first);
    // Two orders are two aggregates: their relative order is not guaranteed (NATS), so compare as a set.
    expect(first.map((n) => n.message).sort()).toEqual([`Your order ${o1} is confirmed: 9.99`, `Your order ${o2} was cancelled: the payment did not complete in time`].sort());
    expect(await t.platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });

  it("serves the notifications over REST", async () => {
    const [c, o] = [newId(), newId()];
    await publish(t.platform, cancelled(o, c, "insufficient-credit"));
    const [n] = await listOf(c, 1);

    const res = await t.platform.fetch(new Request(`http://test/api/v1/customers/${c}/notifications`));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      customerId: c,
      notifications: [
        { orderId: o, kind: "order-cancelled", message: `Your order ${o} was cancelled: your credit limit does not cover it`, createdAt: new Date(timestampMs(n!.createdAt!)).toISOString() },
      ],
    });
    const stranger = newId();
    const unknown = await t.platform.fetch(new Request(`http://test/api/v1/customers/${stranger}/notifications`));
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toEqual({ customerId: stranger, notifications: [] });
  });

  it("rejects a bad customer id naming the field, over RPC and REST", async () => {
    const err = await client.listNotifications({ customerId: "" }).catch((e) => e);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err).map((v) => v.field)).toEqual(["customerId"]);

    const bad = await t.platform.fetch(new Request(`http://test/api/v1/customers/${"x".repeat(65)}/notifications`));
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain("customerId");
  });
});

describe("notifications delivery guarantees", () => {
  it("dead-letters an outcome without an order or customer id and keeps processing later events", async () => {
    const bus = { ...testConfig({ dataDir: "unused" }).bus, maxDeliver: 2, backoffMs: [10] };
    const t = await bootModules([notifications], { bus });
    try {
      const [c, o] = [newId(), newId()];
      const unkeyed = confirmed("", c, 100n);
      const anonymous = cancelled(newId(), "", "out-of-stock");
      await publish(t.platform, unkeyed, anonymous, confirmed(o, c, 100n));

      const dead = await waitFor(async () => {
        const d = await t.platform.bus.deadLetters(CONSUMER);
        return d.length === 2 ? d : undefined;
      }, { what: "two dead letters" });
      expect(dead.map((d) => d.envelope.id).sort()).toEqual([unkeyed.id, anonymous.id].sort());
      expect(dead.find((d) => d.envelope.id === unkeyed.id)?.error).toMatch(/without an order id/);
      const got = await waitFor(async () => (await t.platform.client(NotificationService).listNotifications({ customerId: c })).notifications[0]);
      expect(got).toMatchObject({ orderId: o, kind: "order-confirmed" });
    } finally {
      await t.dispose();
    }
  });
});
