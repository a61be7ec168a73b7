import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import type { Account } from "../domain/account.ts";
import { decideRefund } from "../domain/decide.ts";
import type { Payment, RefundRequest } from "../domain/payment.ts";
import { paymentStore } from "../db/store.ts";
import { commitDecision } from "./commit.ts";

/** What a refund is decided from. */
export interface RefundState {
  readonly payment: Payment | undefined;
  /** The account of the payment's customer (of the request's, when there is no payment). */
  readonly account: Account | undefined;
}

/**
 * RefundPayment (on PaymentRefundRequested), in two phases: `load` reads the order's payment, then
 * its customer's account; `handle` refunds, voids or answers again (see `decideRefund`).
 */
export const refundPayment = {
  async load(storage: ModuleStorage, r: RefundRequest): Promise<RefundState> {
    const payment = await paymentStore.payment(storage, r.orderId);
    // Only a capture needs the account; the version check makes a stale one harmless anyway.
    const account = payment?.status === "CAPTURED" ? await paymentStore.account(storage, payment.customerId) : undefined;
    return { payment, account };
  },
  handle(tx: Tx, r: RefundRequest, s: RefundState): void {
    commitDecision(tx, decideRefund(r, s.payment, s.account, Date.now()));
  },
};
