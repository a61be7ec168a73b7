import { migrations } from "../../gen/migrations/payments.ts";
import { PaymentFailedSchema, PaymentProcessedSchema, PaymentRefundedSchema } from "../../gen/payments/v1/events_pb.ts";
import { PaymentService } from "../../gen/payments/v1/payments_pb.ts";
import { defineModule, service } from "../../platform/module.ts";
import { saga } from "./events/saga.ts";
import { paymentsRpc } from "./rpc.ts";

/**
 * payments — customers' credit, and the payment step of the order saga.
 * Opens an account per customer from customers' CustomerRegistered (credit = the registered
 * limit), charges each order's total on orders' OrderCreated (PaymentProcessed, or PaymentFailed
 * `insufficient-credit` with nothing charged) and gives it back on PaymentRefundRequested
 * (PaymentRefunded; a refund before the charge voids the payment). Charges and refunds happen
 * once per order however often an event is delivered; an order that arrives before its
 * customer's registration is charged when the registration does. Serves
 * `payments.v1.PaymentService`; calls no other module.
 */
export default defineModule({
  name: "payments",
  migrations,
  services: [PaymentService],
  publishes: [PaymentProcessedSchema, PaymentFailedSchema, PaymentRefundedSchema],
  start: ({ storage }) => ({
    services: [service(PaymentService, paymentsRpc(storage))],
    subscriptions: [saga(storage)],
  }),
});
