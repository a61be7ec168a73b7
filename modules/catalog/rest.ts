import type { Hono } from "hono";
import { jsonBody, pathParam } from "../../platform/http/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { createProduct } from "./commands/create-product.ts";
import { CreateProductInput, ProductId, UpdateProductInput } from "./commands/inputs.ts";
import { updateProduct } from "./commands/update-product.ts";
import type { Product } from "./domain/product.ts";
import { getProduct } from "./queries/get-product.ts";

/** The public JSON shape of a product. */
function toJson(p: Product) {
  return {
    id: p.id,
    sku: p.sku,
    name: p.name,
    priceCents: p.priceCents,
    version: p.version,
    createdAt: new Date(p.createdAt).toISOString(),
    updatedAt: new Date(p.updatedAt).toISOString(),
  };
}

/** `POST /api/v1/products`, `GET|PUT /api/v1/products/{id}`. */
export function catalogRoutes(storage: ModuleStorage) {
  return (app: Hono) => {
    app.post("/api/v1/products", async (c) => c.json(toJson(await createProduct(storage, await jsonBody(c, CreateProductInput))), 201));
    app.get("/api/v1/products/:id", async (c) => c.json(toJson(await getProduct(storage, pathParam(c, "id", ProductId)))));
    app.put("/api/v1/products/:id", async (c) => {
      const id = pathParam(c, "id", ProductId);
      return c.json(toJson(await updateProduct(storage, id, await jsonBody(c, UpdateProductInput))));
    });
  };
}
