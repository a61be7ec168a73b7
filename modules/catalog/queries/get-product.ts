import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import type { Product } from "../domain/product.ts";
import { productStore } from "../db/store.ts";

/** One product, or NotFound (`product-not-found`). */
export async function getProduct(storage: ModuleStorage, id: string): Promise<Product> {
  const p = await productStore.byId(storage, id);
  if (!p) throw domainError(Code.NotFound, "product-not-found", `product ${id} does not exist`, "catalog", { productId: id });
  return p;
}

/** The products that exist among `ids` (each once); unknown ids are left out. */
export function getProducts(storage: ModuleStorage, ids: readonly string[]): Promise<Product[]> {
  return productStore.byIds(storage, [...new Set(ids)]);
}
