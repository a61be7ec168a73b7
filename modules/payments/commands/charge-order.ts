import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import type { Account } from "../domain/account.ts";
import { decideCharge } from "../domain/decide.ts";
import type { ChargeRequest, Payment } from "../domain/payment.ts";
import { paymentStore } from "../db/store.ts";
import { commitDecision } from "./commit.ts";

/** What charging an order is decided from. */
export interface ChargeState {
  readonly account: Account | undefined;
  readonly payment: Payment | undefined;
}

/**
 * ChargeOrder (on OrderCreated), in two phases: `load` reads the customer's account and the
 * order's payment; `handle` decides and writes (see `decideCharge`), checked against what was
 * loaded.
 */
export const chargeOrder = {
  async load(storage: ModuleStorage, c: ChargeRequest): Promise<ChargeState> {
    const [account, payment] = await Promise.all([paymentStore.account(storage, c.customerId), paymentStore.payment(storage, c.orderId)]);
    return { account, payment };
  },
  handle(tx: Tx, c: ChargeRequest, s: ChargeState): void {
    commitDecision(tx, decideCharge(c, s.account, s.payment, Date.now()));
  },
};
