import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import type { Product } from "../domain/product.ts";
import { productStore } from "../db/store.ts";

/** One product, or NotFound (`product-not-found`). */
export function getProduct(storage: ModuleStorage, id: string): Product {
  const p = productStore.byId(storage.db, id);
  if (!p) throw domainError(Code.NotFound, "product-not-found", `product ${id} does not exist`, "catalog", { productId: id });
  return p;
}

/** The products that exist among `ids` (each once); unknown ids are left out. */
export function getProducts(storage: ModuleStorage, ids: readonly string[]): Product[] {
  return productStore.byIds(storage.db, [...new Set(ids)]);
}
