import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CustomerRegisteredSchema } from "../../gen/customers/v1/events_pb.ts";
import { OrderCreatedSchema, PaymentRefundRequestedSchema } from "../../gen/orders/v1/events_pb.ts";
import { PaymentFailedSchema, PaymentProcessedSchema, PaymentRefundedSchema } from "../../gen/payments/v1/events_pb.ts";
import { PaymentService, PaymentStatus } from "../../gen/payments/v1/payments_pb.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { newId } from "../../platform/ids.ts";
import type { Platform } from "../../platform/platform.ts";
import { errorReason, fieldViolations } from "../../platform/rpc/errors.ts";
import { collectEvents } from "../../test/support/events.ts";
import { bootModules, testConfig, waitFor } from "../../test/support/platform.ts";
import payments from "./index.ts";

const CONSUMER = "payments.saga";
const PUBLISHED = [PaymentProcessedSchema, PaymentFailedSchema, PaymentRefundedSchema];

/** An envelope as the publishing module's outbox relay would put it on the bus. */
function envelope<D extends DescMessage>(schema: D, source: string, aggregateId: string, init: MessageInitShape<D>, id = newId()): EventEnvelope {
  return { id, type: schema.typeName, source, aggregateId, payload: toBinary(schema, create(schema, init)), headers: {}, occurredAt: Date.now() };
}
const registered = (customerId: string, creditLimitCents: number) =>
  envelope(CustomerRegisteredSchema, "customers", customerId, { customerId, email: `${customerId}@example.com`, name: "Ana", creditLimitCents: BigInt(creditLimitCents) });
const orderCreated = (orderId: string, customerId: string, totalCents: number) =>
  envelope(OrderCreatedSchema, "orders", orderId, {
    orderId,
    customerId,
    lines: [{ productId: "p1", quantity: 1, unitPriceCents: BigInt(totalCents), lineTotalCents: BigInt(totalCents) }],
    totalCents: BigInt(totalCents),
    createdAt: timestampFromMs(Date.now()),
  });
const refundRequested = (orderId: string, customerId: string, attempt = 1) => envelope(PaymentRefundRequestedSchema, "orders", orderId, { orderId, customerId, attempt });

/** A published event, decoded, as `[type, amount or reason]` — what the saga reads of it. */
function describeEvent(e: EventEnvelope): [string, string] {
  const schema = PUBLISHED.find((s) => s.typeName === e.type)!;
  const m = fromBinary(schema, e.payload) as { amountCents?: bigint; reason?: string };
  return [schema.name, m.reason ?? String(m.amountCents)];
}

describe("payments contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof PaymentService>>;
  let events: ReturnType<typeof collectEvents>;
  beforeAll(async () => {
    t = await bootModules([payments]);
    client = t.platform.client(PaymentService);
    events = collectEvents(t.platform, "payments", PUBLISHED.map((s) => s.typeName));
  });
  afterAll(async () => {
    await events.stop();
    await t.dispose();
  });

  /** Publishes envelopes onto the bus in one append; returns their ids. */
  async function publish(...envelopes: EventEnvelope[]): Promise<string[]> {
    await t.platform.bus.publish(envelopes);
    return envelopes.map((e) => e.id);
  }

  /** Resolves once every event id is in the saga's inbox, i.e. its effect and its answers are committed. */
  function processed(ids: readonly string[]) {
    const distinct = [...new Set(ids)];
    return waitFor(
      async () => {
        const rows = await t.platform.storage("payments").queryRaw<{ n: number }>(
          `SELECT count(*) AS n FROM selaras_inbox WHERE consumer = ? AND event_id IN (${distinct.map(() => "?").join(", ")})`,
          [CONSUMER, ...distinct],
        );
        return Number(rows[0]!.n) === distinct.length;
      },
      { what: `events ${distinct.join(", ")} processed` },
    );
  }

  /**
   * Exactly what payments published for one order, once it has all arrived: every outbox row of
   * the order, committed with the events processed so far, is waited for on the bus. Call after
   * `processed`, so no answer of an event already handled can still come.
   */
  async function publishedFor(orderId: string): Promise<Array<[string, string]>> {
    const [row] = await t.platform.storage("payments").queryRaw<{ n: number }>("SELECT count(*) AS n FROM selaras_outbox WHERE aggregate_id = ?", [orderId]);
    const n = Number(row!.n);
    const mine = await waitFor(() => {
      const got = events.events.filter((e) => e.aggregateId === orderId);
      return got.length === n ? got : undefined;
    }, { what: `${n} events of order ${orderId}` });
    return mine.map(describeEvent);
  }

  /** Waits until the order's events include one of `type`. */
  const answered = (orderId: string, type: DescMessage) =>
    waitFor(() => events.events.some((e) => e.aggregateId === orderId && e.type === type.typeName), { what: `${type.name} of ${orderId}` });

  const account = async (customerId: string) => {
    const { account: a } = await client.getAccount({ customerId });
    return { limit: Number(a!.creditLimitCents), available: Number(a!.availableCents) };
  };
  const payment = async (orderId: string) => {
    const { payment: p } = await client.getPayment({ orderId });
    return { customerId: p!.customerId, amount: Number(p!.amountCents), status: p!.status, reason: p!.reason };
  };
  /** A customer registered with `limit`, its account opened. */
  async function customerWith(limit: number): Promise<string> {
    const c = newId();
    await processed(await publish(registered(c, limit)));
    return c;
  }

  it("opens one account per registration with the limit available; the first registration wins", async () => {
    const c = newId();
    const first = registered(c, 5_000);
    await processed(await publish(first, first, registered(c, 9_999)));
    expect(await account(c)).toEqual({ limit: 5_000, available: 5_000 });
    expect((await client.getAccount({ customerId: c })).account?.customerId).toBe(c);
  });

  it("captures an order within the available credit and publishes PaymentProcessed", async () => {
    const [c, o] = [await customerWith(10_000), newId()];
    await processed(await publish(orderCreated(o, c, 7_000)));
    expect(await payment(o)).toEqual({ customerId: c, amount: 7_000, status: PaymentStatus.CAPTURED, reason: "" });
    expect(await account(c)).toEqual({ limit: 10_000, available: 3_000 });
    expect(await publishedFor(o)).toEqual([["PaymentProcessed", "7000"]]);
  });

  it("refuses an order above the available credit with insufficient-credit, charging nothing", async () => {
    const [c, big, exact] = [await customerWith(5_000), newId(), newId()];
    await processed(await publish(orderCreated(big, c, 5_001)));
    expect(await payment(big)).toEqual({ customerId: c, amount: 5_001, status: PaymentStatus.FAILED, reason: "insufficient-credit" });
    expect(await account(c)).toEqual({ limit: 5_000, available: 5_000 });
    expect(await publishedFor(big)).toEqual([["PaymentFailed", "insufficient-credit"]]);

    // All of the credit is still there to use.
    await processed(await publish(orderCreated(exact, c, 5_000)));
    expect((await payment(exact)).status).toBe(PaymentStatus.CAPTURED);
    expect(await account(c)).toEqual({ limit: 5_000, available: 0 });
  });

  it("charges an order once however often OrderCreated is delivered", async () => {
    const [c, o] = [await customerWith(10_000), newId()];
    const original = orderCreated(o, c, 4_000);
    // The same envelope twice (a redelivery), then the same order under new event ids (a
    // re-publish the inbox cannot recognise), two of them in one batch.
    const ids = [...(await publish(original)), ...(await publish(original)), ...(await publish(orderCreated(o, c, 4_000), orderCreated(o, c, 4_000)))];
    await processed(ids);
    expect(await account(c)).toEqual({ limit: 10_000, available: 6_000 });
    expect(await payment(o)).toMatchObject({ amount: 4_000, status: PaymentStatus.CAPTURED });
    expect(await publishedFor(o)).toEqual([["PaymentProcessed", "4000"]]);
  });

  it("refunds a capture once, restoring the credit, and answers every refund request", async () => {
    const [c, o, refused, later] = [await customerWith(10_000), newId(), newId(), newId()];
    // One after the other: on NATS two orders travel on different partitions, in any order.
    await processed(await publish(orderCreated(o, c, 6_000)));
    await processed(await publish(orderCreated(refused, c, 5_000)));
    expect(await account(c)).toEqual({ limit: 10_000, available: 4_000 });

    const first = refundRequested(o, c, 1);
    const ids = [...(await publish(first)), ...(await publish(first)), ...(await publish(refundRequested(o, c, 2), refundRequested(o, c, 2)))];
    await processed(ids);
    expect(await account(c)).toEqual({ limit: 10_000, available: 10_000 });
    expect(await payment(o)).toMatchObject({ amount: 6_000, status: PaymentStatus.REFUNDED });
    // One answer per distinct request, each with the amount given back (once).
    expect(await publishedFor(o)).toEqual([["PaymentProcessed", "6000"], ...Array(3).fill(["PaymentRefunded", "6000"])]);

    // The credit given back can be charged again.
    await processed(await publish(orderCreated(later, c, 10_000)));
    expect((await payment(later)).status).toBe(PaymentStatus.CAPTURED);
    expect(await account(c)).toEqual({ limit: 10_000, available: 0 });
  });

  it("answers a refund request for a failed payment with 0, crediting nothing", async () => {
    const [c, o] = [await customerWith(1_000), newId()];
    await processed(await publish(orderCreated(o, c, 2_000)));
    await processed(await publish(refundRequested(o, c)));
    expect(await payment(o)).toMatchObject({ status: PaymentStatus.FAILED, reason: "insufficient-credit" });
    expect(await account(c)).toEqual({ limit: 1_000, available: 1_000 });
    expect(await publishedFor(o)).toEqual([["PaymentFailed", "insufficient-credit"], ["PaymentRefunded", "0"]]);
  });

  it("voids an order refunded before it was charged: a later OrderCreated charges nothing", async () => {
    const [c, o] = [await customerWith(10_000), newId()];
    await processed(await publish(refundRequested(o, c)));
    expect(await payment(o)).toEqual({ customerId: c, amount: 0, status: PaymentStatus.VOIDED, reason: "" });
    await answered(o, PaymentRefundedSchema);

    await processed(await publish(orderCreated(o, c, 3_000)));
    await processed(await publish(refundRequested(o, c, 2)));
    expect(await payment(o)).toMatchObject({ amount: 0, status: PaymentStatus.VOIDED });
    expect(await account(c)).toEqual({ limit: 10_000, available: 10_000 });
    // No PaymentProcessed or PaymentFailed: the void answered the saga; each request is answered.
    expect(await publishedFor(o)).toEqual([["PaymentRefunded", "0"], ["PaymentRefunded", "0"]]);
  });

  it("charges an order that arrived before its customer's registration once the registration arrives", async () => {
    const [c, early, voided] = [newId(), newId(), newId()];
    await processed(await publish(orderCreated(early, c, 4_000), orderCreated(voided, c, 500)));
    // Parked, not failed: no account and no payment to show yet, nothing published.
    const noAccount = await client.getAccount({ customerId: c }).catch((e) => e);
    expect([noAccount.code, errorReason(noAccount)]).toEqual([Code.NotFound, "account-not-found"]);
    const noPayment = await client.getPayment({ orderId: early }).catch((e) => e);
    expect([noPayment.code, errorReason(noPayment)]).toEqual([Code.NotFound, "payment-not-found"]);
    // The saga gives up on one of them before the customer arrives: it is voided, never charged.
    await processed(await publish(refundRequested(voided, c)));
    expect(await payment(voided)).toMatchObject({ amount: 500, status: PaymentStatus.VOIDED });

    await processed(await publish(registered(c, 5_000)));
    expect(await payment(early)).toMatchObject({ amount: 4_000, status: PaymentStatus.CAPTURED });
    expect(await account(c)).toEqual({ limit: 5_000, available: 1_000 });
    expect(await publishedFor(early)).toEqual([["PaymentProcessed", "4000"]]);
    expect(await publishedFor(voided)).toEqual([["PaymentRefunded", "0"]]);
    expect(await t.platform.bus.deadLetters(CONSUMER)).toEqual([]);
  });

  it("charges an order that arrives together with its customer's registration exactly once", async () => {
    const [c, o] = [newId(), newId()];
    // One append: on the embedded bus one batch where both read "no account"; on NATS two streams.
    await processed(await publish(orderCreated(o, c, 2_000), registered(c, 3_000)));
    expect(await payment(o)).toMatchObject({ amount: 2_000, status: PaymentStatus.CAPTURED });
    expect(await account(c)).toEqual({ limit: 3_000, available: 1_000 });
    expect(await publishedFor(o)).toEqual([["PaymentProcessed", "2000"]]);
  });

  it("never captures more than the limit when many orders of one customer race for the credit", async () => {
    const c = await customerWith(10_000);
    const orders = Array.from({ length: 30 }, () => newId());
    // One append: the consumer gets them in batches, every order read the same balance.
    await processed(await publish(...orders.map((o) => orderCreated(o, c, 1_000))));
    const statuses = await Promise.all(orders.map(async (o) => (await payment(o)).status));
    expect(statuses.filter((s) => s === PaymentStatus.CAPTURED)).toHaveLength(10);
    expect(statuses.filter((s) => s === PaymentStatus.FAILED)).toHaveLength(20);
    expect(await account(c)).toEqual({ limit: 10_000, available: 0 });
    const answers = (await Promise.all(orders.map(publishedFor))).flat();
    expect(answers.filter(([type]) => type === "PaymentProcessed")).toHaveLength(10);
    expect(answers.filter(([type]) => type === "PaymentFailed")).toHaveLength(20);
  });

  it("keeps the captured total equal to the credit used (GetTotals)", async () => {
    const totals = async () => {
      const r = await client.getTotals({});
      return { captured: Number(r.capturedCents), count: Number(r.capturedCount), used: Number(r.creditUsedCents) };
    };
    const before = await totals();
    expect(before.used).toBe(before.captured);

    const [c, o] = [await customerWith(3_000), newId()];
    await processed(await publish(orderCreated(o, c, 2_500)));
    expect(await totals()).toEqual({ captured: before.captured + 2_500, count: before.count + 1, used: before.used + 2_500 });
    await processed(await publish(refundRequested(o, c)));
    expect(await totals()).toEqual(before);
  });

  it("validates ids and answers NotFound for unknown ones", async () => {
    for (const [call, field] of [
      [() => client.getAccount({ customerId: "" }), "customerId"],
      [() => client.getAccount({ customerId: "x".repeat(65) }), "customerId"],
      [() => client.getPayment({ orderId: "" }), "orderId"],
    ] as const) {
      const err = await call().catch((e) => e);
      expect(err.code).toBe(Code.InvalidArgument);
      expect(fieldViolations(err).map((v) => v.field)).toEqual([field]);
    }
    const account = await client.getAccount({ customerId: newId() }).catch((e) => e);
    expect([account.code, errorReason(account)]).toEqual([Code.NotFound, "account-not-found"]);
    const payment = await client.getPayment({ orderId: newId() }).catch((e) => e);
    expect([payment.code, errorReason(payment)]).toEqual([Code.NotFound, "payment-not-found"]);
  });
});

describe("payments delivery guarantees", () => {
  it("dead-letters an OrderCreated it cannot book and keeps charging later orders", async () => {
    const bus = { ...testConfig({ dataDir: "unused" }).bus, maxDeliver: 2, backoffMs: [10] };
    const t = await bootModules([payments], { bus });
    try {
      const platform: Platform = t.platform;
      const [c, o] = [newId(), newId()];
      const unkeyed = orderCreated("", c, 100);
      await platform.bus.publish([registered(c, 1_000), unkeyed, orderCreated(o, c, 100)]);
      const dead = await waitFor(async () => {
        const d = await platform.bus.deadLetters(CONSUMER);
        return d.length === 1 ? d : undefined;
      }, { what: "one dead letter" });
      expect(dead[0]!.envelope.id).toBe(unkeyed.id);
      expect(dead[0]!.error).toMatch(/without an order id/);
      const client = platform.client(PaymentService);
      await waitFor(async () => (await client.getPayment({ orderId: o }).catch(() => undefined))?.payment?.status === PaymentStatus.CAPTURED, { what: "the later order captured" });
      expect(Number((await client.getAccount({ customerId: c })).account?.availableCents)).toBe(900);
    } finally {
      await t.dispose();
    }
  });
});
