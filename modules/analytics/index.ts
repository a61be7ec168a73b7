import { AnalyticsService } from "../../gen/analytics/v1/analytics_pb.ts";
import { migrations } from "../../gen/migrations/analytics.ts";
import { defineModule, service } from "../../platform/module.ts";
import { PRODUCTS, salesProjection } from "./events/sales.ts";
import { analyticsRoutes } from "./rest.ts";
import { analyticsRpc } from "./rpc.ts";

/**
 * analytics — sales and revenue per product per UTC day, a read model built from two kinds of
 * input: change data capture of catalog's `products` table (names and prices, without catalog's
 * code being involved: `captures`) and orders' events (OrderCreated for the lines, OrderConfirmed
 * for the sale, counted on the confirmation's day). Serves `analytics.v1.AnalyticsService`,
 * `GET /api/v1/analytics/products/{id}/sales` and `GET /api/v1/analytics/sales`; calls no other
 * module and publishes nothing.
 */
export default defineModule({
  name: "analytics",
  migrations,
  services: [AnalyticsService],
  captures: [PRODUCTS],
  start: ({ storage }) => ({
    services: [service(AnalyticsService, analyticsRpc(storage))],
    routes: analyticsRoutes(storage),
    subscriptions: [salesProjection(storage)],
  }),
});
