import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { changeProduct, type Product } from "../domain/product.ts";
import { productStore } from "../db/store.ts";
import { productUpdated } from "../events/publish.ts";
import type { UpdateProductInput } from "./inputs.ts";

/** Changes name and/or price; publishes ProductUpdated only when something changed. */
export async function updateProduct(storage: ModuleStorage, id: string, input: UpdateProductInput): Promise<Product> {
  return storage.transact((tx) => {
    const current = productStore.byId(tx.db, id);
    if (!current) throw domainError(Code.NotFound, "product-not-found", `product ${id} does not exist`, "catalog", { productId: id });
    const next = changeProduct(current, input, Date.now());
    if (!next) return current;
    productStore.update(tx.db, next);
    productUpdated(tx, next);
    return next;
  });
}
