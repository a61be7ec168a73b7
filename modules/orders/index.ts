import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { migrations } from "../../gen/migrations/orders.ts";
import { OrderCreatedSchema } from "../../gen/orders/v1/events_pb.ts";
import { OrderService } from "../../gen/orders/v1/orders_pb.ts";
import { defineModule, service } from "../../platform/module.ts";
import { expireIdempotencyKeys } from "./commands/expire-idempotency-keys.ts";
import { OrdersConfig } from "./config.ts";
import { ordersRoutes } from "./rest.ts";
import { ordersRpc } from "./rpc.ts";

/**
 * orders — orders and (next) the order-placement saga.
 * Serves `orders.v1.OrderService` and the `/api/v1/orders` routes; prices orders through
 * `CatalogService.GetProducts`, checks the customer through `CustomerService.GetCustomer`;
 * publishes OrderCreated. `Idempotency-Key` makes placing an order safe to retry for
 * `modules.orders.idempotencyKeyRetentionHours` (default 24).
 */
export default defineModule<OrdersConfig>({
  name: "orders",
  migrations,
  config: OrdersConfig,
  services: [OrderService],
  dependsOn: [CatalogService, CustomerService],
  publishes: [OrderCreatedSchema],
  start: (ctx) => {
    const deps = { storage: ctx.storage, catalog: ctx.client(CatalogService), customers: ctx.client(CustomerService) };
    const retentionMs = ctx.config.idempotencyKeyRetentionHours * 3_600_000;
    // Expired keys go in the background, a few times per retention period (at least hourly).
    const expiry = setInterval(() => {
      expireIdempotencyKeys(ctx.storage, Date.now() - retentionMs).catch((err) => ctx.logger.warn("expiring idempotency keys failed", { err }));
    }, Math.min(3_600_000, retentionMs / 4));
    expiry.unref?.();
    return {
      services: [service(OrderService, ordersRpc(deps))],
      routes: ordersRoutes(deps),
      stop: () => clearInterval(expiry),
    };
  },
});
