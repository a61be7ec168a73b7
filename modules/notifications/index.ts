import { migrations } from "../../gen/migrations/notifications.ts";
import { NotificationService } from "../../gen/notifications/v1/notifications_pb.ts";
import { defineModule, service } from "../../platform/module.ts";
import { outcomes } from "./events/outcomes.ts";
import { notificationsRoutes } from "./rest.ts";
import { notificationsRpc } from "./rpc.ts";

/**
 * notifications — records one message to the customer per final outcome of an order.
 * Built only from orders' OrderConfirmed/OrderCancelled through one durable subscription; each
 * (order, outcome) is recorded exactly once, even when the outcome is published twice under
 * different event ids. Serves `notifications.v1.NotificationService` and
 * `GET /api/v1/customers/{id}/notifications`; calls no other module and publishes nothing.
 * Sending to a real channel (mail, push) is out of scope.
 */
export default defineModule({
  name: "notifications",
  migrations,
  services: [NotificationService],
  start: ({ storage }) => ({
    services: [service(NotificationService, notificationsRpc(storage))],
    routes: notificationsRoutes(storage),
    subscriptions: [outcomes],
  }),
});
