/**
 * A bench-only module serving `catalog.v1.CatalogService` with a constant reply: no storage, no
 * query. Booted in a platform of its own, it isolates what the in-process transport itself costs
 * (the catalog's real handler spends most of a call in its SQLite query).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { CatalogService, ProductSchema, type Product } from "../gen/catalog/v1/catalog_pb.ts";
import { defineModule, service } from "../platform/module.ts";

const fixed: Product = create(ProductSchema, {
  id: "0190c1b2-0000-7000-8000-000000000001",
  sku: "BENCH-STUB",
  name: "Kopi Luwak 250 g",
  priceCents: 12_500n,
  version: 1n,
  createdAt: timestampFromMs(1_750_000_000_000),
  updatedAt: timestampFromMs(1_750_000_000_000),
});

/** The "query" of the stub: a plain function returning the same message every time. */
export function stubProduct(_id: string): Product {
  return fixed;
}

/** The stub's service implementation (only GetProduct answers). */
export const stubImpl: Partial<ServiceImpl<typeof CatalogService>> = {
  async getProduct(req) {
    return { product: stubProduct(req.id) };
  },
};

export const stubModule = defineModule({
  name: "bench-stub",
  migrations: { sqlite: [] },
  services: [CatalogService],
  start: () => ({ services: [service(CatalogService, stubImpl)] }),
});
