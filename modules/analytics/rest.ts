import type { Hono } from "hono";
import type { ModuleStorage } from "../../platform/module.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import { getProductSales } from "./queries/get-product-sales.ts";
import { DailySalesInput, productSalesInput } from "./queries/inputs.ts";
import { listDailySales } from "./queries/list-daily-sales.ts";

const ProductSalesQuery = productSalesInput("from", "to");

/**
 * `GET /api/v1/analytics/products/{id}/sales?from=YYYY-MM-DD&to=YYYY-MM-DD` and
 * `GET /api/v1/analytics/sales?day=YYYY-MM-DD` (money and counts as JSON numbers); a bad or
 * missing parameter is a 400 naming it.
 */
export function analyticsRoutes(storage: ModuleStorage) {
  return (app: Hono) => {
    app.get("/api/v1/analytics/products/:id/sales", async (c) => {
      const { productId, from, to } = parseOrThrow(ProductSalesQuery, { productId: c.req.param("id"), ...c.req.query() });
      const s = await getProductSales(storage, productId, from, to);
      return c.json({
        productId,
        productName: s.productName,
        priceCents: s.priceCents,
        from,
        to,
        totalUnitsSold: s.totalUnitsSold,
        totalRevenueCents: s.totalRevenueCents,
        days: s.days.map((d) => ({ day: d.day, unitsSold: d.unitsSold, revenueCents: d.revenueCents, orders: d.orders })),
      });
    });
    app.get("/api/v1/analytics/sales", async (c) => {
      const { day } = parseOrThrow(DailySalesInput, c.req.query());
      const products = await listDailySales(storage, day);
      return c.json({ day, products: products.map((d) => ({ productId: d.productId, productName: d.productName, unitsSold: d.unitsSold, revenueCents: d.revenueCents, orders: d.orders })) });
    });
  };
}
