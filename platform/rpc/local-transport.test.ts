import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CatalogService, ProductSchema } from "../../gen/catalog/v1/catalog_pb.ts";
import { domainError, errorReason } from "./errors.ts";
import { createLocalTransport, LocalServiceRegistry } from "./local-transport.ts";

/** The ConnectError a call fails with; fails the test if the call succeeds. */
function failure(p: Promise<unknown>): Promise<ConnectError> {
  return p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

// A fake catalog: the transport is what is under test, not the module.
function setup(impl: Parameters<LocalServiceRegistry["register"]>[1], interceptors: Interceptor[] = [], defaultTimeoutMs?: number) {
  const registry = new LocalServiceRegistry();
  registry.register(CatalogService, impl);
  const errors: unknown[] = [];
  const client = createClient(CatalogService, createLocalTransport({ registry, interceptors, defaultTimeoutMs, onError: (e) => errors.push(e) }));
  return { client, errors };
}

describe("in-process transport", () => {
  it("isolates messages: neither side can mutate the other's copy", async () => {
    const kept = create(ProductSchema, { id: "p1", name: "original", priceCents: 5n });
    let received: { ids: string[] } | undefined;
    const { client } = setup({
      getProducts(req: { ids: string[] }) {
        received = req;
        req.ids.push("added-by-callee");
        return { products: [kept] };
      },
    });
    const ids = ["a"];
    const res = await client.getProducts({ ids });
    expect(ids).toEqual(["a"]);
    expect(received?.ids).toEqual(["a", "added-by-callee"]);
    res.products[0]!.name = "changed-by-caller";
    expect(kept.name).toBe("original");
  });

  it("keeps ConnectError codes and details, and hides unknown errors as Internal", async () => {
    const { client, errors } = setup({
      getProduct(req: { id: string }) {
        if (req.id === "missing") throw domainError(Code.NotFound, "product-not-found", "no such product", "catalog");
        throw new Error("database password is hunter2");
      },
    });
    const notFound = await failure(client.getProduct({ id: "missing" }));
    expect(notFound.code).toBe(Code.NotFound);
    expect(errorReason(notFound)).toBe("product-not-found");
    const internal = await failure(client.getProduct({ id: "x" }));
    expect(internal.code).toBe(Code.Internal);
    expect(internal.message).not.toContain("hunter2");
    expect(String(errors[0])).toContain("hunter2"); // the cause is logged, not returned
  });

  it("enforces deadlines and aborts the handler's signal", async () => {
    let aborted = false;
    const { client } = setup({
      getProduct(_req: unknown, ctx: { signal: AbortSignal }) {
        return new Promise((_, reject) => ctx.signal.addEventListener("abort", () => ((aborted = true), reject(ctx.signal.reason))));
      },
    });
    const err = await failure(client.getProduct({ id: "x" }, { timeoutMs: 20 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(aborted).toBe(true);
  });

  it("applies the default deadline when the caller sets none", async () => {
    const { client } = setup({ getProduct: () => new Promise(() => {}) }, [], 20);
    const err = await failure(client.getProduct({ id: "x" }));
    expect(err.code).toBe(Code.DeadlineExceeded);
  });

  it("cancels the call when the caller's signal aborts", async () => {
    let handlerSignal: AbortSignal | undefined;
    const { client } = setup({
      getProduct(_req: unknown, ctx: { signal: AbortSignal }) {
        handlerSignal = ctx.signal;
        return new Promise(() => {});
      },
    });
    const controller = new AbortController();
    const call = failure(client.getProduct({ id: "x" }, { signal: controller.signal }));
    controller.abort();
    expect((await call).code).toBe(Code.Canceled);
    expect(handlerSignal?.aborted).toBe(true);
  });

  it("runs client interceptors and passes headers", async () => {
    const seen: string[] = [];
    const tag: Interceptor = (next) => async (req) => {
      seen.push(`${req.method.name}:${req.header.get("x-tag")}`);
      req.header.set("x-from-interceptor", "yes");
      return next(req);
    };
    const { client } = setup({ getProduct: (_r: unknown, ctx: { requestHeader: Headers }) => ({ product: { id: ctx.requestHeader.get("x-from-interceptor") ?? "" } }) }, [tag]);
    const res = await client.getProduct({ id: "x" }, { headers: { "x-tag": "t1" } });
    expect(seen).toEqual(["GetProduct:t1"]);
    expect(res.product?.id).toBe("yes");
  });

  it("answers Unimplemented for a method the module does not implement", async () => {
    const { client } = setup({});
    const err = await failure(client.getProducts({ ids: [] }));
    expect(err.code).toBe(Code.Unimplemented);
  });
});
