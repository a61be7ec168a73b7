/**
 * The native gRPC server on its own (no platform, so it runs under Node and Bun alike), driven by
 * an independent `@grpc/grpc-js` client: error mapping, trace context, graceful stop.
 * The real binary with the real modules is covered by test/e2e/grpc.e2e.test.ts.
 */
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { CatalogService, ProductSchema } from "../../gen/catalog/v1/catalog_pb.ts";
import { service } from "../module.ts";
import { createLogger } from "../observability/logger.ts";
import { Tracer } from "../observability/trace.ts";
import { domainError } from "./errors.ts";
import { startGrpcServer, type GrpcServer } from "./grpc-server.ts";

const protoDir = fileURLToPath(new URL("../../proto", import.meta.url));
const CatalogClient = (grpc.loadPackageDefinition(protoLoader.loadSync("catalog/v1/catalog.proto", { includeDirs: [protoDir], longs: String })) as any).catalog.v1
  .CatalogService as typeof grpc.Client;

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const PARENT = `00-${TRACE}-b7ad6b7169203331-01`;

type Outcome = { res?: any; err?: grpc.ServiceError; headers?: grpc.Metadata };
function call(client: grpc.Client, method: string, req: unknown, traceparent?: string): Promise<Outcome> {
  const md = new grpc.Metadata();
  if (traceparent) md.set("traceparent", traceparent);
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const c = (client as any)[method](req, md, (err: grpc.ServiceError | null, res: unknown) => resolve(err ? { err, headers } : { res, headers }));
    c.on("metadata", (m: grpc.Metadata) => (headers = m));
  });
}

async function setup() {
  const tracer = new Tracer();
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: "error",
    sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>),
    context: () => {
      const t = tracer.current();
      return t && { traceId: t.traceId };
    },
  });
  const seen: Array<string | undefined> = [];
  let release = () => {};
  const gate = new Promise<void>((r) => (release = r));
  let entered = () => {};
  const slowEntered = new Promise<void>((r) => (entered = r));
  const binding = service(CatalogService, {
    async getProduct(req) {
      seen.push(tracer.current()?.traceId);
      if (req.id === "slow") {
        entered();
        await gate;
      }
      if (req.id === "boom") throw new Error("disk on fire at /var/lib/secret");
      if (req.id === "missing") throw domainError(Code.NotFound, "product-not-found", "product missing does not exist", "catalog");
      return { product: create(ProductSchema, { id: req.id, name: "Kopi", priceCents: 2500n }) };
    },
  });
  const server = await startGrpcServer({ port: 0, host: "127.0.0.1", bindings: [binding], logger, tracer, readMaxBytes: 1 << 20 });
  const client = new CatalogClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  return { server, client, logs, seen, release, slowEntered };
}

describe("native gRPC server", () => {
  const open: Array<{ server: GrpcServer; client: grpc.Client }> = [];
  afterEach(async () => {
    for (const o of open.splice(0)) {
      o.client.close();
      await o.server.stop();
    }
  });
  const start = async () => {
    const s = await setup();
    open.push(s);
    return s;
  };

  it("serves a unary call and continues the caller's trace", async () => {
    const { client, seen } = await start();
    const r = await call(client, "GetProduct", { id: "p1" }, PARENT);
    expect(r.err).toBeUndefined();
    expect(r.res.product).toMatchObject({ id: "p1", name: "Kopi", priceCents: "2500" });
    expect(seen).toEqual([TRACE]); // the handler ran inside the caller's trace
    const back = String(r.headers?.get("traceparent")[0]);
    expect(back.split("-")[1]).toBe(TRACE);
    expect(back.split("-")[2]).not.toBe("b7ad6b7169203331"); // a new span of that trace
  });

  it("starts a new trace without (or with a malformed) traceparent", async () => {
    const { client, seen } = await start();
    await call(client, "GetProduct", { id: "p1" });
    await call(client, "GetProduct", { id: "p1" }, "00-zz-bad");
    expect(seen).toHaveLength(2);
    for (const t of seen) expect(t).toMatch(/^[0-9a-f]{32}$/);
    expect(seen[0]).not.toBe(seen[1]);
  });

  it("passes domain errors through with their gRPC status", async () => {
    const { client } = await start();
    const r = await call(client, "GetProduct", { id: "missing" });
    expect(r.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(r.err?.details).toBe("product missing does not exist");
  });

  it("turns an unknown error into INTERNAL with a generic message and logs the cause with the trace id", async () => {
    const { client, logs } = await start();
    const r = await call(client, "GetProduct", { id: "boom" }, PARENT);
    expect(r.err?.code).toBe(grpc.status.INTERNAL);
    expect(r.err?.details).toBe("internal error");
    expect(JSON.stringify(r.err?.metadata.toJSON())).not.toContain("secret");
    expect(logs).toContainEqual(
      expect.objectContaining({ level: "error", msg: "rpc failed", procedure: "catalog.v1.CatalogService/GetProduct", traceId: TRACE, err: expect.objectContaining({ message: expect.stringContaining("disk on fire") }) }),
    );
  });

  it("answers UNIMPLEMENTED for a method the service does not implement", async () => {
    const { client } = await start();
    const r = await call(client, "GetProducts", { ids: ["p1"] });
    expect(r.err?.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("stops gracefully while a client keeps its connection open", async () => {
    const { server, client } = await start();
    expect((await call(client, "GetProduct", { id: "p1" })).err).toBeUndefined();
    await server.stop(); // resolves: the open HTTP/2 session got a GOAWAY instead of being waited for
    const after = await call(client, "GetProduct", { id: "p1" });
    expect(after.err?.code).toBe(grpc.status.UNAVAILABLE);
  });

  it("lets a call in flight finish when it stops", async () => {
    const { server, client, release, slowEntered } = await start();
    const inFlight = call(client, "GetProduct", { id: "slow" });
    await slowEntered;
    let stopped = false;
    const stopping = server.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 50)); // give stop() a chance to (wrongly) finish first
    expect(stopped).toBe(false);
    release();
    expect((await inFlight).res?.product).toMatchObject({ id: "slow" });
    await stopping;
  });

  it("fails with the address when the port is taken", async () => {
    const { server } = await start();
    const tracer = new Tracer();
    const logger = createLogger({ level: "error", sink: () => {} });
    await expect(startGrpcServer({ port: server.port, host: "127.0.0.1", bindings: [], logger, tracer, readMaxBytes: 1024 })).rejects.toThrow(
      `gRPC server could not listen on 127.0.0.1:${server.port}`,
    );
  });
});
