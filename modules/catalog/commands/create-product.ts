import { Code } from "@connectrpc/connect";
import { newId } from "../../../platform/ids.ts";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { newProduct, type Product } from "../domain/product.ts";
import { productStore } from "../db/store.ts";
import { productCreated } from "../events/publish.ts";
import type { CreateProductInput } from "./inputs.ts";

/** Creates a product and publishes ProductCreated, atomically. A taken SKU is AlreadyExists (`sku-taken`): the unique constraint decides, so two racing requests cannot both win. */
export async function createProduct(storage: ModuleStorage, input: CreateProductInput): Promise<Product> {
  const product = newProduct({ id: newId(), ...input, now: Date.now() });
  return storage.transact((tx) => {
    productStore.insert(tx, product, {
      ifDuplicate: () => domainError(Code.AlreadyExists, "sku-taken", `sku ${input.sku} is already used by another product`, "catalog", { sku: input.sku }),
    });
    productCreated(tx, product);
    return product;
  });
}
