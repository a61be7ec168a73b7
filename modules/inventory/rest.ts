import type { Hono } from "hono";
import { jsonBody, pathParam } from "../../platform/http/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { productId, RestockBody } from "./commands/inputs.ts";
import type { Restock } from "./commands/restock.ts";
import type { StockRow } from "./db/store.ts";
import { getStock } from "./queries/get-stock.ts";

/** The public JSON shape of a product's stock. */
function toJson(s: StockRow) {
  return { productId: s.productId, available: s.available, reserved: s.reserved };
}

/** `POST /api/v1/inventory/{productId}/restock` `{quantity}`, `GET /api/v1/inventory/{productId}`. */
export function inventoryRoutes(storage: ModuleStorage, restock: Restock) {
  return (app: Hono) => {
    app.post("/api/v1/inventory/:productId/restock", async (c) => {
      const id = pathParam(c, "productId", productId);
      const { quantity } = await jsonBody(c, RestockBody);
      return c.json(toJson(await restock({ productId: id, quantity })));
    });
    app.get("/api/v1/inventory/:productId", async (c) => c.json(toJson(await getStock(storage, pathParam(c, "productId", productId)))));
  };
}
