import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { migrations } from "../../gen/migrations/orders.ts";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
  OrderCreatedSchema,
  PaymentRefundRequestedSchema,
  StockReleaseRequestedSchema,
  StockReservationRequestedSchema,
} from "../../gen/orders/v1/events_pb.ts";
import { OrderService } from "../../gen/orders/v1/orders_pb.ts";
import { defineModule, service } from "../../platform/module.ts";
import { SagaBacklog } from "./commands/admission.ts";
import { sweepSagas } from "./commands/advance-saga.ts";
import { expireIdempotencyKeys } from "./commands/expire-idempotency-keys.ts";
import { PlacedOrders } from "./db/placed-orders.ts";
import { sagaStore } from "./db/saga-store.ts";
import { sagaSubscription } from "./events/saga.ts";
import { OrdersConfig } from "./config.ts";
import { ordersRoutes } from "./rest.ts";
import { ordersRpc } from "./rpc.ts";

/**
 * orders — orders and the orchestration of their placement saga
 * (`OrderCreated → PaymentProcessed → InventoryReserved → OrderConfirmed`, compensated on failure
 * or timeout; see domain/saga.ts). Serves `orders.v1.OrderService` and the `/api/v1/orders`
 * routes; prices orders through `CatalogService.GetProducts`, checks the customer through
 * `CustomerService.GetCustomer`. Listens to payments' and inventory's answers; a sweeper moves
 * sagas whose deadline passed. `Idempotency-Key` makes placing an order safe to retry for
 * `modules.orders.idempotencyKeyRetentionHours` (default 24).
 */
export default defineModule<OrdersConfig>({
  name: "orders",
  migrations,
  config: OrdersConfig,
  services: [OrderService],
  dependsOn: [CatalogService, CustomerService],
  publishes: [OrderCreatedSchema, StockReservationRequestedSchema, PaymentRefundRequestedSchema, StockReleaseRequestedSchema, OrderConfirmedSchema, OrderCancelledSchema],
  start: async (ctx) => {
    const timings = ctx.config.saga;
    const backlog = new SagaBacklog(ctx.storage, timings.maxInFlight, 1_000, (err) => ctx.logger.warn("counting sagas in flight failed", { err }));
    const orders = new PlacedOrders();
    const deps = { storage: ctx.storage, catalog: ctx.client(CatalogService), customers: ctx.client(CustomerService), timings, backlog, orders };
    const sagaDeps = { storage: ctx.storage, timings, orders };
    const retentionMs = ctx.config.idempotencyKeyRetentionHours * 3_600_000;
    // Expired keys go in the background, a few times per retention period (at least hourly).
    const expiry = setInterval(() => {
      expireIdempotencyKeys(ctx.storage, Date.now() - retentionMs).catch((err) => ctx.logger.warn("expiring idempotency keys failed", { err }));
    }, Math.min(3_600_000, retentionMs / 4));
    expiry.unref?.();
    // Deadlines: one sweep at a time; a failed sweep is logged and the next one tries again.
    let sweeping: Promise<unknown> | undefined;
    const sweeper = setInterval(() => {
      sweeping ??= sweepSagas(sagaDeps, Date.now())
        .catch((err) => ctx.logger.warn("saga sweep failed", { err }))
        .finally(() => (sweeping = undefined));
    }, timings.sweepIntervalMs);
    sweeper.unref?.();
    ctx.metrics.gauge("selaras_sagas", "Order sagas not done yet, by state (STUCK needs an operator: ResumeSaga)", ["state"], async (set) => {
      const counts = await sagaStore.countActive(ctx.storage);
      for (const state of ["AWAITING_PAYMENT", "AWAITING_STOCK", "COMPENSATING", "STUCK"] as const) set({ state }, counts.get(state) ?? 0);
    });
    ctx.metrics.gauge("selaras_sagas_overdue", "Order sagas past their deadline by more than 5 s (the sweeper is not keeping up, or cannot move them)", [], async (set) => {
      set({}, (await sagaStore.overdue(ctx.storage, Date.now() - 5_000, 1)).count);
    });
    await backlog.start();
    return {
      services: [service(OrderService, ordersRpc(deps))],
      routes: ordersRoutes(deps),
      subscriptions: [sagaSubscription(sagaDeps)],
      async stop() {
        clearInterval(expiry);
        clearInterval(sweeper);
        await backlog.stop();
        await sweeping;
      },
    };
  },
});
