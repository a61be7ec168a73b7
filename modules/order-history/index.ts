import { migrations } from "../../gen/migrations/order-history.ts";
import { OrderHistoryService } from "../../gen/order_history/v1/order_history_pb.ts";
import { defineModule, service } from "../../platform/module.ts";
import { projection } from "./events/projection.ts";
import { orderHistoryRoutes } from "./rest.ts";
import { orderHistoryRpc } from "./rpc.ts";

/**
 * order-history — a CQRS read model: each customer's orders with customer and product names.
 * Built only from events (catalog's ProductCreated/ProductUpdated, customers' CustomerRegistered,
 * orders' OrderCreated and the saga's outcome OrderConfirmed/OrderCancelled, shown as the order's
 * status) through one durable subscription, so it can be rebuilt by replay.
 * Serves `order_history.v1.OrderHistoryService` and `GET /api/v1/customers/{id}/orders`;
 * calls no other module and publishes nothing.
 */
export default defineModule({
  name: "order-history",
  migrations,
  services: [OrderHistoryService],
  start: ({ storage }) => ({
    services: [service(OrderHistoryService, orderHistoryRpc(storage))],
    routes: orderHistoryRoutes(storage),
    subscriptions: [projection],
  }),
});
