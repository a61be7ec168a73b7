import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { ProductCreatedSchema, ProductUpdatedSchema } from "../../gen/catalog/v1/events_pb.ts";
import { errorReason, fieldViolations } from "../../platform/rpc/errors.ts";
import { bootModules } from "../../test/support/platform.ts";
import { collectEvents } from "../../test/support/events.ts";
import catalog from "./index.ts";

describe("catalog contract", () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let client: ReturnType<typeof t.platform.client<typeof CatalogService>>;
  beforeAll(async () => {
    t = await bootModules([catalog]);
    client = t.platform.client(CatalogService);
  });
  afterAll(() => t.dispose());

  it("creates, reads and updates a product, publishing one event per change", async () => {
    const events = collectEvents(t.platform, "catalog", [ProductCreatedSchema.typeName, ProductUpdatedSchema.typeName]);
    const { product } = await client.createProduct({ sku: "SKU-1", name: "Kopi", priceCents: 2500n });
    expect(product).toMatchObject({ sku: "SKU-1", name: "Kopi", priceCents: 2500n, version: 1n });
    const got = await client.getProduct({ id: product!.id });
    expect(got.product?.name).toBe("Kopi");

    const updated = await client.updateProduct({ id: product!.id, priceCents: 2700n });
    expect(updated.product).toMatchObject({ name: "Kopi", priceCents: 2700n, version: 2n });
    // No change, no new version and no event.
    const same = await client.updateProduct({ id: product!.id, priceCents: 2700n });
    expect(same.product?.version).toBe(2n);

    const seen = await events.waitForCount(2);
    expect(seen.map((e) => e.type)).toEqual([ProductCreatedSchema.typeName, ProductUpdatedSchema.typeName]);
    expect(fromBinary(ProductCreatedSchema, seen[0]!.payload)).toMatchObject({ productId: product!.id, sku: "SKU-1", priceCents: 2500n });
    expect(fromBinary(ProductUpdatedSchema, seen[1]!.payload)).toMatchObject({ productId: product!.id, priceCents: 2700n, version: 2n });
    expect(seen.every((e) => e.aggregateId === product!.id)).toBe(true);
    await events.stop();
  });

  it("batch lookup returns the existing products once each", async () => {
    const a = (await client.createProduct({ sku: "SKU-A", name: "A", priceCents: 100n })).product!;
    const b = (await client.createProduct({ sku: "SKU-B", name: "B", priceCents: 200n })).product!;
    const { products } = await client.getProducts({ ids: [a.id, b.id, a.id, "missing"] });
    expect(products.map((p) => p.sku).sort()).toEqual(["SKU-A", "SKU-B"]);
  });

  it("rejects a taken sku with AlreadyExists and reason sku-taken", async () => {
    await client.createProduct({ sku: "DUP", name: "x", priceCents: 1n });
    const err = await client.createProduct({ sku: "DUP", name: "y", priceCents: 1n }).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.code).toBe(Code.AlreadyExists);
    expect(errorReason(err)).toBe("sku-taken");
  });

  it("names the bad field on invalid input and writes nothing", async () => {
    const err = await client.createProduct({ sku: "", name: "x", priceCents: -5n }).catch((e) => e);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err).map((v) => v.field).sort()).toEqual(["priceCents", "sku"]);
    const unknown = await client.getProduct({ id: "nope" }).catch((e) => e);
    expect(unknown.code).toBe(Code.NotFound);
    expect(errorReason(unknown)).toBe("product-not-found");
  });
});
