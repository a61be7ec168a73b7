/**
 * Bad input over real HTTP (PRODUCT.md): every malformed, mistyped, incomplete, out-of-range,
 * unknown-id, unknown-field or oversized request gets a 4xx — never a 500 — in the one error
 * shape (`{code, message, details}`) naming the field, and writes nothing: the row count of every
 * table in every SQLite file of the data dir (business tables, outbox, inbox, bus) is unchanged.
 *
 * Runs once per topology (harness.ts `TOPOLOGIES`): one embedded process, one process on Postgres + NATS, the
 * three processes of config/split.json. "The data dir" is then every process's data dir: the
 * fingerprint covers every SQLite file of every process, so a bad request that a process forwarded
 * to another (orders → core over Connect) must not write there either; on NATS it covers the
 * message count of every stream of the topology's bus prefix too.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/platform.ts";
import { isBun, startTopology, TOPOLOGIES, type Api, type Reply, type RunningTopology } from "./harness.ts";

const MiB = 1024 * 1024;

/** One bad request and what the answer must name. */
interface Case {
  readonly name: string;
  readonly method: "POST" | "PUT";
  readonly path: () => string;
  /** A JSON value to send, or `raw` text. */
  readonly json?: unknown;
  readonly raw?: string;
  readonly headers?: Record<string, string>;
  /** Fields that must appear in `fieldViolations[].field`. */
  readonly fields?: readonly string[];
  /** Allowed statuses (default 400) and Connect codes (default invalid_argument). */
  readonly status?: readonly number[];
  readonly codes?: readonly string[];
  /** A domain reason the error must carry (`selaras.v1.ErrorInfo`). */
  readonly reason?: string;
}

type ErrorBody = { code: string; message: string; details: Array<{ type: string; debug?: { fieldViolations?: Array<{ field: string; description: string }>; reason?: string } }> };

const violationsOf = (b: ErrorBody) => b.details.filter((d) => d.type === "selaras.v1.BadRequest").flatMap((d) => d.debug?.fieldViolations ?? []);
const reasonOf = (b: ErrorBody) => b.details.find((d) => d.type === "selaras.v1.ErrorInfo")?.debug?.reason;

/** The one error shape, a 4xx status, and nothing else. */
function expectErrorShape(r: Reply, statuses: readonly number[] = [400]): ErrorBody {
  expect(statuses, `status ${r.status}: ${r.text.slice(0, 300)}`).toContain(r.status);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  const b = r.body as ErrorBody;
  expect(b).toMatchObject({ code: expect.any(String), message: expect.any(String), details: expect.any(Array) });
  expect(b.message.length).toBeGreaterThan(0);
  return b;
}

describe.skipIf(!isBun).each(TOPOLOGIES)("bad input is rejected with a 4xx naming the field, and writes nothing, %s topology (e2e)", (kind) => {
  let topo: RunningTopology;
  let http: Api;
  let productId: string;
  let customerId: string;
  let productVersion: number;
  const run = Math.random().toString(36).slice(2, 8);

  /**
   * Row counts of every table of every module's storage (SQLite files by `process/file`, Postgres
   * schemas by name) and, on NATS, the message count of every stream of the topology's prefix.
   */
  const fingerprint = async () => ({ "nats streams": await topo.streamCounts(), ...(await topo.tableCounts()) });

  beforeAll(async () => {
    topo = await startTopology(kind);
    http = topo.api;
    const p = await http.post("/api/v1/products", { sku: `${run}-nasi`, name: "Nasi Goreng", priceCents: 1500 });
    expect(p.status, p.text).toBe(201);
    productId = p.body.id;
    productVersion = p.body.version;
    const c = await http.post("/api/v1/customers", { email: `ani.${run}@example.com`, name: "Ani", creditLimitCents: 100_000 });
    expect(c.status, c.text).toBe(201);
    customerId = c.body.id;
    // Let the setup's own events drain, so any later change in a row count is the bad request's.
    await waitFor(() => topo.settled(), { timeoutMs: 10_000, what: "the setup's events to settle" });
  });
  afterAll(() => topo?.stop());

  /** Sends `c` and checks the answer and that no row anywhere changed. */
  async function check(c: Case): Promise<void> {
    const before = await fingerprint();
    const r = await http.request(c.method, c.path(), { json: c.json, raw: c.raw, headers: c.headers });
    const b = expectErrorShape(r, c.status ?? [400]);
    expect(c.codes ?? ["invalid_argument"], r.text).toContain(b.code);
    // A 400 is about the request itself, so it must name the offending fields.
    const fields = violationsOf(b).map((v) => v.field);
    if (r.status === 400) for (const f of c.fields ?? []) expect(fields, `fieldViolations of ${r.text}`).toContain(f);
    for (const v of violationsOf(b)) expect(v.description.length, `description of ${v.field}`).toBeGreaterThan(0);
    if (c.reason) expect(reasonOf(b), r.text).toBe(c.reason);
    expect(await fingerprint()).toEqual(before);
  }

  // Cases shared by every JSON endpoint: the body itself is wrong.
  const bodyCases = (method: "POST" | "PUT", path: () => string): Case[] => [
    { name: "malformed JSON", method, path, raw: '{"name": "x",', fields: ["(body)"] },
    { name: "empty body", method, path, raw: "", fields: ["(body)"] },
    { name: "an array body", method, path, json: [{ name: "x" }], fields: ["(body)"] },
    { name: "a string body", method, path, json: "hello", fields: ["(body)"] },
    { name: "null body", method, path, json: null, fields: ["(body)"] },
  ];

  const productCases = (): Case[] => {
    const post = { method: "POST" as const, path: () => "/api/v1/products" };
    const ok = { sku: `${run}-ok`, name: "Mie", priceCents: 100 };
    return [
      ...bodyCases("POST", post.path),
      { ...post, name: "string price", json: { ...ok, priceCents: "100" }, fields: ["priceCents"] },
      { ...post, name: "float price", json: { ...ok, priceCents: 12.5 }, fields: ["priceCents"] },
      { ...post, name: "negative price", json: { ...ok, priceCents: -1 }, fields: ["priceCents"] },
      { ...post, name: "number as name", json: { ...ok, name: 42 }, fields: ["name"] },
      { ...post, name: "blank name", json: { ...ok, name: "   " }, fields: ["name"] },
      { ...post, name: "missing name", json: { sku: ok.sku, priceCents: 1 }, fields: ["name"] },
      { ...post, name: "missing every field", json: {}, fields: ["sku", "name", "priceCents"] },
      { ...post, name: "bad sku characters", json: { ...ok, sku: "a b/c" }, fields: ["sku"] },
      { ...post, name: "a taken sku", json: { sku: `${run}-nasi`, name: "Dup", priceCents: 1 }, status: [409], codes: ["already_exists"], reason: "sku-taken" },
    ];
  };

  const updateCases = (): Case[] => {
    const put = { method: "PUT" as const, path: () => `/api/v1/products/${productId}` };
    return [
      ...bodyCases("PUT", put.path),
      { ...put, name: "string price", json: { priceCents: "5" }, fields: ["priceCents"] },
      { ...put, name: "negative price", json: { priceCents: -5 }, fields: ["priceCents"] },
      { ...put, name: "float price", json: { priceCents: 0.5 }, fields: ["priceCents"] },
      { ...put, name: "blank name", json: { name: "" }, fields: ["name"] },
      { ...put, name: "nothing to change", json: {}, fields: ["(body)"] },
      { name: "an unknown product id", method: "PUT", path: () => "/api/v1/products/no-such-product", json: { name: "x" }, status: [404], codes: ["not_found"], reason: "product-not-found" },
      // The field name is not asserted here: see the known defect below.
      { name: "an over-long product id", method: "PUT", path: () => `/api/v1/products/${"x".repeat(65)}`, json: { name: "x" } },
    ];
  };

  const customerCases = (): Case[] => {
    const post = { method: "POST" as const, path: () => "/api/v1/customers" };
    const ok = { email: `new.${run}@example.com`, name: "Rina", creditLimitCents: 1000 };
    return [
      ...bodyCases("POST", post.path),
      { ...post, name: "missing email", json: { name: ok.name, creditLimitCents: 1 }, fields: ["email"] },
      { ...post, name: "not an email", json: { ...ok, email: "not-an-email" }, fields: ["email"] },
      { ...post, name: "string credit limit", json: { ...ok, creditLimitCents: "1000" }, fields: ["creditLimitCents"] },
      { ...post, name: "negative credit limit", json: { ...ok, creditLimitCents: -1 }, fields: ["creditLimitCents"] },
      { ...post, name: "float credit limit", json: { ...ok, creditLimitCents: 1.5 }, fields: ["creditLimitCents"] },
      { ...post, name: "missing every field", json: {}, fields: ["email", "name", "creditLimitCents"] },
      { ...post, name: "a taken email (case-insensitive)", json: { ...ok, email: `ANI.${run}@example.com` }, status: [409], codes: ["already_exists"], reason: "email-taken" },
    ];
  };

  const unknownRef = ["not_found", "invalid_argument", "failed_precondition"];
  const orderCases = (): Case[] => {
    const post = { method: "POST" as const, path: () => "/api/v1/orders" };
    const line = () => ({ productId, quantity: 1 });
    return [
      ...bodyCases("POST", post.path),
      { ...post, name: "missing customerId", json: { lines: [{ productId: "p", quantity: 1 }] }, fields: ["customerId"] },
      { ...post, name: "missing lines", json: { customerId: "c" }, fields: ["lines"] },
      { ...post, name: "no lines", json: { customerId: "c", lines: [] }, fields: ["lines"] },
      { ...post, name: "lines not a list", json: { customerId: "c", lines: { productId: "p", quantity: 1 } }, fields: ["lines"] },
      { ...post, name: "float quantity", json: { customerId: "c", lines: [{ productId: "p", quantity: 1.5 }] }, fields: ["lines[0].quantity"] },
      { ...post, name: "string quantity", json: { customerId: "c", lines: [{ productId: "p", quantity: "2" }] }, fields: ["lines[0].quantity"] },
      { ...post, name: "zero quantity", json: { customerId: "c", lines: [{ productId: "p", quantity: 0 }] }, fields: ["lines[0].quantity"] },
      { ...post, name: "negative quantity", json: { customerId: "c", lines: [{ productId: "p", quantity: 1 }, { productId: "q", quantity: -3 }] }, fields: ["lines[1].quantity"] },
      { ...post, name: "a line without productId", json: { customerId: "c", lines: [{ quantity: 1 }] }, fields: ["lines[0].productId"] },
      { ...post, name: "the same product on two lines", json: { customerId: "c", lines: [{ productId: "p", quantity: 1 }, { productId: "p", quantity: 2 }] }, fields: ["lines[1].productId"] },
      { ...post, name: "an over-long Idempotency-Key", get json() { return { customerId, lines: [line()] }; }, headers: { "Idempotency-Key": "k".repeat(201) }, fields: ["Idempotency-Key"] },
      // Unknown referenced ids: 404 not_found, or 400 naming the field; with a reason either way.
      { ...post, name: "an unknown customer", get json() { return { customerId: "no-such-customer", lines: [line()] }; }, status: [400, 404], codes: unknownRef, reason: "customer-not-found", fields: ["customerId"] },
      { ...post, name: "an unknown product", get json() { return { customerId, lines: [line(), { productId: "no-such-product", quantity: 1 }] }; }, status: [400, 404], codes: unknownRef, reason: "product-not-found", fields: ["lines[1].productId"] },
    ];
  };

  describe.each([
    ["POST /api/v1/products", productCases],
    ["PUT /api/v1/products/{id}", updateCases],
    ["POST /api/v1/customers", customerCases],
    ["POST /api/v1/orders", orderCases],
  ] as const)("%s", (_endpoint, cases) => {
    it.each(cases().map((c) => [c.name, c] as const))("%s", async (_name, c) => {
      await check(c);
    });
  });

  describe("unknown fields", () => {
    const cases: Array<[string, "POST" | "PUT", () => string, () => unknown, string]> = [
      ["POST /api/v1/products", "POST", () => "/api/v1/products", () => ({ sku: `${run}-x`, name: "x", priceCents: 1, colour: "red" }), "colour"],
      ["PUT /api/v1/products/{id}", "PUT", () => `/api/v1/products/${productId}`, () => ({ name: "x", colour: "red" }), "colour"],
      ["POST /api/v1/customers", "POST", () => "/api/v1/customers", () => ({ email: `x.${run}@example.com`, name: "x", creditLimitCents: 1, vip: true }), "vip"],
      ["POST /api/v1/orders", "POST", () => "/api/v1/orders", () => ({ customerId, lines: [{ productId, quantity: 1, discount: 50 }] }), "discount"],
    ];
    it.each(cases)("%s: an unknown field is rejected, and named", async (_e, method, path, json, field) => {
      const before = await fingerprint();
      const r = await http.request(method, path(), { json: json() });
      const b = expectErrorShape(r);
      expect(b.code).toBe("invalid_argument");
      // The unknown key must be named: as the field itself, or in the description of its parent.
      const named = violationsOf(b).some((v) => v.field === field || v.field.endsWith(`.${field}`) || v.description.includes(`"${field}"`));
      expect(named, r.text).toBe(true);
      expect(await fingerprint()).toEqual(before);
    });

    it("names the unknown key itself as fieldViolations[].field", async () => {
      const r = await http.post("/api/v1/products", { sku: `${run}-y`, name: "y", priceCents: 1, colour: "red" });
      expect(r.status).toBe(400);
      expect(violationsOf(r.body as ErrorBody).map((v) => v.field)).toContain("colour");
    });
  });

  it("names a bad path parameter as `id`, not `(body)`", async () => {
    const r = await http.put(`/api/v1/products/${"x".repeat(65)}`, { name: "x" });
    expect(r.status).toBe(400);
    expect(violationsOf(r.body as ErrorBody).map((v) => v.field)).toEqual(["id"]);
  });

  describe("oversized bodies (> 1 MiB)", () => {
    const endpoints: Array<[string, "POST" | "PUT", () => string, (big: string) => unknown]> = [
      ["POST /api/v1/products", "POST", () => "/api/v1/products", (big) => ({ sku: `${run}-big`, name: big, priceCents: 1 })],
      ["PUT /api/v1/products/{id}", "PUT", () => `/api/v1/products/${productId}`, (big) => ({ name: big })],
      ["POST /api/v1/customers", "POST", () => "/api/v1/customers", (big) => ({ email: `big.${run}@example.com`, name: big, creditLimitCents: 1 })],
      ["POST /api/v1/orders", "POST", () => "/api/v1/orders", (big) => ({ customerId, lines: [{ productId, quantity: 1 }], note: big })],
    ];

    it.each(endpoints)("%s: just over the limit, with content-length: 413 in the error shape, nothing written", async (_e, method, path, body) => {
      const before = await fingerprint();
      const raw = JSON.stringify(body("x".repeat(MiB + 16)));
      expect(raw.length).toBeGreaterThan(MiB);
      const r = await http.request(method, path(), { raw });
      const b = expectErrorShape(r, [413]);
      expect(b.code).toBe("resource_exhausted");
      expect(await fingerprint()).toEqual(before);
    });

    it.each(endpoints)("%s: over the limit, streamed without content-length: 413 in the error shape, nothing written", async (_e, method, path, body) => {
      const before = await fingerprint();
      const bytes = new TextEncoder().encode(JSON.stringify(body("y".repeat(MiB + 16))));
      const stream = new ReadableStream<Uint8Array>({
        start(ctl) {
          for (let i = 0; i < bytes.length; i += 64 * 1024) ctl.enqueue(bytes.subarray(i, i + 64 * 1024));
          ctl.close();
        },
      });
      const res = await fetch(topo.urlFor(path()) + path(), { method, headers: { "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit);
      const text = await res.text();
      expect(res.status, text).toBe(413);
      expect(JSON.parse(text)).toMatchObject({ code: "resource_exhausted", message: expect.any(String), details: expect.any(Array) });
      expect(await fingerprint()).toEqual(before);
    });

    it("far over the limit (8 MiB): a 4xx, nothing written, and the server keeps serving", async () => {
      const before = await fingerprint();
      const r = await http.request("POST", "/api/v1/products", { raw: JSON.stringify({ sku: `${run}-huge`, name: "z".repeat(8 * MiB), priceCents: 1 }) }).catch((err: Error) => err);
      // Bun may close the connection before the client finished sending; either way no write.
      if (!(r instanceof Error)) expect(r.status).toBe(413);
      expect(await fingerprint()).toEqual(before);
      expect((await http.get("/healthz")).status).toBe(200);
    });

    // Bun.serve's own cap (far above http.maxBodyBytes) would answer an empty 413; the app's must win.
    it("far over the limit (8 MiB): the 413 is in the one error shape", async () => {
      const r = await http.request("POST", "/api/v1/products", { raw: JSON.stringify({ sku: `${run}-huge2`, name: "z".repeat(8 * MiB), priceCents: 1 }) });
      expectErrorShape(r, [413]);
    });
  });

  it("the bad requests above changed no product, no customer and no read model, and logged no internal error", async () => {
    const p = await http.get(`/api/v1/products/${productId}`);
    expect(p.body).toMatchObject({ id: productId, name: "Nasi Goreng", priceCents: 1500, version: productVersion });
    // A good order after all the bad ones is the only order the read model shows for the customer.
    const good = await http.post("/api/v1/orders", { customerId, lines: [{ productId, quantity: 2 }] });
    expect(good.status, good.text).toBe(202);
    const h = await waitFor(
      async () => {
        const r = await http.get(`/api/v1/customers/${customerId}/orders`);
        return r.body?.orders?.some((o: { id: string }) => o.id === good.body.id) ? r.body : undefined;
      },
      { timeoutMs: 10_000, what: "the good order in the read model" },
    );
    expect(h.orders.map((o: { id: string }) => o.id)).toEqual([good.body.id]);
    expect(topo.entries().filter((e) => e.level === "error")).toEqual([]);
  });
});
