import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { CustomerRegisteredSchema } from "../../gen/customers/v1/events_pb.ts";
import type { EventEnvelope } from "../../platform/bus/types.ts";
import { errorReason, fieldViolations } from "../../platform/rpc/errors.ts";
import { collectEvents } from "../../test/support/events.ts";
import { bootModules, waitFor } from "../../test/support/platform.ts";
import customers from "./index.ts";

const registered = (e: EventEnvelope) => fromBinary(CustomerRegisteredSchema, e.payload);

describe("customers contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof CustomerService>>;
  beforeAll(async () => {
    t = await bootModules([customers]);
    client = t.platform.client(CustomerService);
  });
  afterAll(() => t.dispose());

  /**
   * Registers a fresh customer and waits for its event. The module's outbox is relayed in commit
   * order, so once this event is seen every event committed before it has been seen too: how a
   * test proves an event was *not* published without sleeping.
   */
  async function barrier(events: ReturnType<typeof collectEvents>): Promise<EventEnvelope[]> {
    const { customer } = await client.createCustomer({ email: `barrier-${crypto.randomUUID()}@example.com`, name: "Barrier", creditLimitCents: 0n });
    // Every outbox published and every subscriber caught up: on NATS aggregates travel on
    // different partitions, so the barrier's own event alone proves nothing about the others.
    await t.platform.settle();
    return waitFor(() => (events.events.some((e) => e.aggregateId === customer!.id) ? [...events.events] : undefined), { what: "the barrier event" });
  }

  it("registers and reads a customer, publishing CustomerRegistered with the normalised email", async () => {
    const events = collectEvents(t.platform, "customers", [CustomerRegisteredSchema.typeName]);
    const before = Date.now();
    const { customer } = await client.createCustomer({ email: "  Ana.Sari@Example.COM ", name: "  Ana Sari ", creditLimitCents: 150_000n });
    expect(customer).toMatchObject({ email: "ana.sari@example.com", name: "Ana Sari", creditLimitCents: 150_000n });
    expect(customer!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(timestampMs(customer!.createdAt!)).toBeGreaterThanOrEqual(before);

    const got = await client.getCustomer({ id: customer!.id });
    expect(got.customer).toEqual(customer);

    const seen = await events.waitForCount(1);
    const mine = seen.filter((e) => e.aggregateId === customer!.id);
    expect(mine.map((e) => e.type)).toEqual([CustomerRegisteredSchema.typeName]);
    expect(registered(mine[0]!)).toMatchObject({ customerId: customer!.id, email: "ana.sari@example.com", name: "Ana Sari", creditLimitCents: 150_000n });
    await events.stop();
  });

  it("accepts a zero credit limit", async () => {
    const { customer } = await client.createCustomer({ email: "zero@example.com", name: "Zero", creditLimitCents: 0n });
    expect(customer?.creditLimitCents).toBe(0n);
  });

  it("rejects an email differing only in case with AlreadyExists email-taken, publishing nothing for it", async () => {
    const events = collectEvents(t.platform, "customers", [CustomerRegisteredSchema.typeName]);
    const first = (await client.createCustomer({ email: "budi@example.com", name: "Budi", creditLimitCents: 1n })).customer!;
    const err = await client.createCustomer({ email: "BUDI@Example.com", name: "Budi 2", creditLimitCents: 2n }).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.code).toBe(Code.AlreadyExists);
    expect(errorReason(err)).toBe("email-taken");

    const seen = await barrier(events);
    expect(seen.map(registered).filter((e) => e.email === "budi@example.com").map((e) => e.customerId)).toEqual([first.id]);
    expect((await client.getCustomer({ id: first.id })).customer?.name).toBe("Budi");
    await events.stop();
  });

  it("lets exactly one of two concurrent registrations of one email win", async () => {
    const results = await Promise.allSettled([
      client.createCustomer({ email: "race@example.com", name: "A", creditLimitCents: 1n }),
      client.createCustomer({ email: "Race@Example.com", name: "B", creditLimitCents: 1n }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason.code).toBe(Code.AlreadyExists);
    expect(errorReason(lost.reason)).toBe("email-taken");
  });

  it("names every bad field on invalid input and writes nothing", async () => {
    const events = collectEvents(t.platform, "customers", [CustomerRegisteredSchema.typeName]);
    const err = await client.createCustomer({ email: "not-an-email", name: "Ghost", creditLimitCents: -1n }).catch((e) => e);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err).map((v) => v.field).sort()).toEqual(["creditLimitCents", "email"]);

    const empty = await client.createCustomer({ email: "ghost@example.com", name: "   ", creditLimitCents: 1_000_000_000_001n }).catch((e) => e);
    expect(empty.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(empty).map((v) => v.field).sort()).toEqual(["creditLimitCents", "name"]);

    // Nothing was written: the email is still free, and no event mentions it.
    const ok = await client.createCustomer({ email: "ghost@example.com", name: "Ghost", creditLimitCents: 0n });
    expect(ok.customer?.email).toBe("ghost@example.com");
    const seen = await barrier(events);
    expect(seen.map(registered).filter((e) => e.email === "ghost@example.com").map((e) => e.customerId)).toEqual([ok.customer!.id]);
    expect(seen.map(registered).some((e) => e.email === "not-an-email")).toBe(false);
    await events.stop();
  });

  it("answers NotFound customer-not-found for an unknown id, InvalidArgument for an empty one", async () => {
    const unknown = await client.getCustomer({ id: "nope" }).catch((e) => e);
    expect(unknown.code).toBe(Code.NotFound);
    expect(errorReason(unknown)).toBe("customer-not-found");
    const empty = await client.getCustomer({ id: "" }).catch((e) => e);
    expect(empty.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(empty).map((v) => v.field)).toEqual(["(body)"]);
  });

  describe("REST", () => {
    const post = (body: string) =>
      t.platform.fetch(new Request("http://x/api/v1/customers", { method: "POST", headers: { "content-type": "application/json" }, body }));
    const get = (path: string) => t.platform.fetch(new Request(`http://x${path}`));
    const json = (res: Response): Promise<any> => res.json();
    const fields = (body: any): string[] => body.details.flatMap((d: any) => d.debug?.fieldViolations ?? []).map((v: any) => v.field).sort();

    it("POST answers 201 with the customer; GET reads it back", async () => {
      const res = await post(JSON.stringify({ email: "Citra@Example.com", name: "Citra", creditLimitCents: 99_900 }));
      expect(res.status).toBe(201);
      const body = await json(res);
      expect(body).toEqual({ id: expect.any(String), email: "citra@example.com", name: "Citra", creditLimitCents: 99_900, createdAt: expect.any(String) });
      expect(new Date(body.createdAt).toISOString()).toBe(body.createdAt);

      const read = await get(`/api/v1/customers/${body.id}`);
      expect(read.status).toBe(200);
      expect(await json(read)).toEqual(body);
    });

    it("answers 400 naming the fields for wrong types", async () => {
      const res = await post(JSON.stringify({ email: 5, name: "x", creditLimitCents: "100" }));
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("email") });
      expect(fields(body)).toEqual(["creditLimitCents", "email"]);
    });

    it("answers 400 for a fractional credit limit and for unknown fields", async () => {
      const frac = await json(await post(JSON.stringify({ email: "d@example.com", name: "D", creditLimitCents: 1.5 })));
      expect(fields(frac)).toEqual(["creditLimitCents"]);
      const extra = await post(JSON.stringify({ email: "d@example.com", name: "D", creditLimitCents: 1, admin: true }));
      expect(extra.status).toBe(400);
      const extraBody = await json(extra);
      expect(extraBody.code).toBe("invalid_argument");
      expect(fields(extraBody)).toEqual(["admin"]);
    });

    it("answers 400 for malformed JSON", async () => {
      const res = await post("{not json");
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body.code).toBe("invalid_argument");
      expect(fields(body)).toEqual(["(body)"]);
    });

    it("answers 409 email-taken for a duplicate", async () => {
      await post(JSON.stringify({ email: "dup@example.com", name: "D", creditLimitCents: 1 }));
      const res = await post(JSON.stringify({ email: "DUP@example.com", name: "D", creditLimitCents: 1 }));
      expect(res.status).toBe(409);
      expect((await json(res)).details).toContainEqual({ type: "selaras.v1.ErrorInfo", debug: { reason: "email-taken" } });
    });

    it("answers 404 JSON for an unknown id", async () => {
      const res = await get("/api/v1/customers/nope");
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/application\/json/);
      const body = await json(res);
      expect(body.code).toBe("not_found");
      expect(body.details).toContainEqual({ type: "selaras.v1.ErrorInfo", debug: { reason: "customer-not-found" } });
    });

    it("leaves /api/v1/customers/{id}/orders to another module", async () => {
      const res = await get("/api/v1/customers/nope/orders");
      expect(res.status).toBe(404);
      const body = await json(res);
      // The platform's no-route answer, not this module's customer-not-found.
      expect(body).toEqual({ code: "not_found", message: "no route for GET /api/v1/customers/nope/orders", details: [] });
    });
  });
});
