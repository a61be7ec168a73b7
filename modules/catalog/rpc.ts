import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { CatalogService, ProductSchema, type Product as ProductMsg } from "../../gen/catalog/v1/catalog_pb.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { createProduct } from "./commands/create-product.ts";
import { CreateProductInput, ProductId, UpdateProductInput } from "./commands/inputs.ts";
import { updateProduct } from "./commands/update-product.ts";
import type { Product } from "./domain/product.ts";
import { getProduct, getProducts } from "./queries/get-product.ts";

/** Domain product -> proto. */
export function toProto(p: Product): ProductMsg {
  return create(ProductSchema, {
    id: p.id,
    sku: p.sku,
    name: p.name,
    priceCents: BigInt(p.priceCents),
    version: BigInt(p.version),
    createdAt: timestampFromMs(p.createdAt),
    updatedAt: timestampFromMs(p.updatedAt),
  });
}

/** bigint from the wire -> number, or undefined so validation names the field. */
function cents(v: bigint | undefined): number | undefined {
  return v === undefined ? undefined : Number(v);
}

/** The Connect implementation of catalog.v1.CatalogService: proto in, command/query, proto out. */
export function catalogRpc(storage: ModuleStorage): ServiceImpl<typeof CatalogService> {
  return {
    async createProduct(req) {
      const input = parseOrThrow(CreateProductInput, { sku: req.sku, name: req.name, priceCents: cents(req.priceCents) });
      return { product: toProto(await createProduct(storage, input)) };
    },
    async getProduct(req) {
      return { product: toProto(await getProduct(storage, parseOrThrow(ProductId, req.id))) };
    },
    async updateProduct(req) {
      const id = parseOrThrow(ProductId, req.id);
      const input = parseOrThrow(UpdateProductInput, { name: req.name, priceCents: cents(req.priceCents) });
      return { product: toProto(await updateProduct(storage, id, input)) };
    },
    async getProducts(req) {
      return { products: (await getProducts(storage, req.ids)).map(toProto) };
    },
  };
}
