import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { AnalyticsService, DailyProductSalesSchema, type DailyProductSales } from "../../gen/analytics/v1/analytics_pb.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { DailySales } from "./domain/sales.ts";
import { getProductSales } from "./queries/get-product-sales.ts";
import { DailySalesInput, productSalesInput } from "./queries/inputs.ts";
import { listDailySales } from "./queries/list-daily-sales.ts";

const ProductSalesRequest = productSalesInput("fromDay", "toDay");

/** Domain daily sales -> proto. */
function toProto(d: DailySales): DailyProductSales {
  return create(DailyProductSalesSchema, {
    day: d.day,
    productId: d.productId,
    productName: d.productName,
    unitsSold: BigInt(d.unitsSold),
    revenueCents: BigInt(d.revenueCents),
    orders: BigInt(d.orders),
  });
}

/** The Connect implementation of analytics.v1.AnalyticsService. */
export function analyticsRpc(storage: ModuleStorage): ServiceImpl<typeof AnalyticsService> {
  return {
    async getProductSales(req) {
      const { productId, from, to } = parseOrThrow(ProductSalesRequest, { productId: req.productId, fromDay: req.fromDay, toDay: req.toDay });
      const s = await getProductSales(storage, productId, from, to);
      return {
        productId: s.productId,
        productName: s.productName,
        priceCents: BigInt(s.priceCents),
        days: s.days.map(toProto),
        totalUnitsSold: BigInt(s.totalUnitsSold),
        totalRevenueCents: BigInt(s.totalRevenueCents),
      };
    },
    async listDailySales(req) {
      const { day } = parseOrThrow(DailySalesInput, { day: req.day });
      return { day, products: (await listDailySales(storage, day)).map(toProto) };
    },
  };
}
