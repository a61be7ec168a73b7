import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { AccountSchema, PaymentSchema, PaymentService, PaymentStatus, type Account as AccountMsg, type Payment as PaymentMsg } from "../../gen/payments/v1/payments_pb.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { Account } from "./domain/account.ts";
import type { Payment, PaymentStatus as Status } from "./domain/payment.ts";
import { getAccount } from "./queries/get-account.ts";
import { getPayment } from "./queries/get-payment.ts";
import { getTotals } from "./queries/get-totals.ts";
import { GetAccountInput, GetPaymentInput } from "./queries/inputs.ts";

// PENDING never leaves the module (getPayment answers NotFound for it).
const STATUS: Record<Status, PaymentStatus> = {
  PENDING: PaymentStatus.UNSPECIFIED,
  CAPTURED: PaymentStatus.CAPTURED,
  FAILED: PaymentStatus.FAILED,
  REFUNDED: PaymentStatus.REFUNDED,
  VOIDED: PaymentStatus.VOIDED,
};

/** Domain account -> proto. */
export function accountToProto(a: Account): AccountMsg {
  return create(AccountSchema, { customerId: a.customerId, creditLimitCents: BigInt(a.creditLimitCents), availableCents: BigInt(a.availableCents) });
}

/** Domain payment -> proto. */
export function paymentToProto(p: Payment): PaymentMsg {
  return create(PaymentSchema, { orderId: p.orderId, customerId: p.customerId, amountCents: BigInt(p.amountCents), status: STATUS[p.status], reason: p.reason });
}

/** The Connect implementation of payments.v1.PaymentService: proto in, query, proto out. */
export function paymentsRpc(storage: ModuleStorage): ServiceImpl<typeof PaymentService> {
  return {
    async getAccount(req) {
      const { customerId } = parseOrThrow(GetAccountInput, { customerId: req.customerId });
      return { account: accountToProto(await getAccount(storage, customerId)) };
    },
    async getPayment(req) {
      const { orderId } = parseOrThrow(GetPaymentInput, { orderId: req.orderId });
      return { payment: paymentToProto(await getPayment(storage, orderId)) };
    },
    async getTotals() {
      const t = await getTotals(storage);
      return { capturedCents: BigInt(t.capturedCents), capturedCount: BigInt(t.capturedCount), creditUsedCents: BigInt(t.creditUsedCents) };
    },
  };
}
