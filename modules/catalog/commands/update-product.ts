import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { changeProduct, type Product } from "../domain/product.ts";
import { productStore } from "../db/store.ts";
import { productUpdated } from "../events/publish.ts";
import type { UpdateProductInput } from "./inputs.ts";

/** Another update committed between our read and our write. */
class LostUpdate extends Error {}

const MAX_ATTEMPTS = 5;

/**
 * Changes name and/or price; publishes ProductUpdated only when something changed. Reads the
 * product, computes the change, and writes it only over the version it read (optimistic
 * concurrency); a concurrent update makes it read again and retry, so no change is lost and
 * versions stay gapless.
 */
export async function updateProduct(storage: ModuleStorage, id: string, input: UpdateProductInput): Promise<Product> {
  for (let attempt = 1; ; attempt++) {
    const current = await productStore.byId(storage, id);
    if (!current) throw domainError(Code.NotFound, "product-not-found", `product ${id} does not exist`, "catalog", { productId: id });
    const next = changeProduct(current, input, Date.now());
    if (!next) return current;
    try {
      return await storage.transact((tx) => {
        productStore.update(tx, next, current.version, { ifUnchanged: () => new LostUpdate() });
        productUpdated(tx, next);
        return next;
      });
    } catch (err) {
      if (!(err instanceof LostUpdate)) throw err;
      if (attempt >= MAX_ATTEMPTS) {
        throw domainError(Code.Aborted, "concurrent-update", `product ${id} was changed concurrently ${MAX_ATTEMPTS} times in a row; try again`, "catalog", { productId: id });
      }
    }
  }
}
