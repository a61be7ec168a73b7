import { CustomerRegisteredSchema, type CustomerRegistered } from "../../../gen/customers/v1/events_pb.ts";
import { OrderCreatedSchema, PaymentRefundRequestedSchema, type OrderCreated, type PaymentRefundRequested } from "../../../gen/orders/v1/events_pb.ts";
import { on, type ModuleStorage, type SubscriptionSpec } from "../../../platform/module.ts";
import { chargeOrder } from "../commands/charge-order.ts";
import { openAccount } from "../commands/open-account.ts";
import { refundPayment } from "../commands/refund-payment.ts";
import { checkCharge, checkRefund, checkRegistration, type ChargeRequest, type RefundRequest, type Registration } from "../domain/payment.ts";

// Proto -> domain. A request that breaks the contract throws InvalidEventError: retried, then dead-lettered.
const registration = (e: CustomerRegistered): Registration => checkRegistration({ customerId: e.customerId, creditLimitCents: Number(e.creditLimitCents) });
const charge = (e: OrderCreated): ChargeRequest => checkCharge({ orderId: e.orderId, customerId: e.customerId, totalCents: Number(e.totalCents) });
const refund = (e: PaymentRefundRequested): RefundRequest => checkRefund({ orderId: e.orderId, customerId: e.customerId });

/**
 * payments' part of the order saga: accounts from customers' registrations, a charge per
 * OrderCreated, a refund (or void) per PaymentRefundRequested. Each handler loads what it decides
 * from, then writes checked against it; the platform re-runs it on a WriteConflict. Effects are
 * once per order (the payment row), answers once per request (each request publishes).
 */
export function saga(storage: ModuleStorage): SubscriptionSpec {
  return {
    name: "saga",
    handlers: [
      // Every handler writes the customer's account: deliveries of one customer take turns.
      on(CustomerRegisteredSchema, { load: (e) => openAccount.load(storage, registration(e)), handle: (e, _meta, tx, s) => openAccount.handle(tx, registration(e), s), serializeBy: (e) => [e.customerId] }),
      on(OrderCreatedSchema, { load: (e) => chargeOrder.load(storage, charge(e)), handle: (e, _meta, tx, s) => chargeOrder.handle(tx, charge(e), s), serializeBy: (e) => [e.customerId] }),
      on(PaymentRefundRequestedSchema, { load: (e) => refundPayment.load(storage, refund(e)), handle: (e, _meta, tx, s) => refundPayment.handle(tx, refund(e), s), serializeBy: (e) => [e.customerId] }),
    ],
  };
}
