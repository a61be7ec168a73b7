import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import type { Account } from "../domain/account.ts";
import { decideRegistration } from "../domain/decide.ts";
import type { Payment, Registration } from "../domain/payment.ts";
import { paymentStore } from "../db/store.ts";
import { commitDecision } from "./commit.ts";

/** What opening an account is decided from. */
export interface OpenAccountState {
  readonly account: Account | undefined;
  /** Charges parked on the account while the customer was not registered. */
  readonly parked: readonly Payment[];
}

/**
 * OpenAccount (on CustomerRegistered), in two phases: `load` reads the account and the charges
 * parked on it; `handle` opens it and charges them (see `decideRegistration`).
 */
export const openAccount = {
  async load(storage: ModuleStorage, r: Registration): Promise<OpenAccountState> {
    const [account, parked] = await Promise.all([paymentStore.account(storage, r.customerId), paymentStore.paymentsIn(storage, r.customerId, "PENDING")]);
    return { account, parked };
  },
  handle(tx: Tx, r: Registration, s: OpenAccountState): void {
    commitDecision(tx, decideRegistration(r, s.account, s.parked, Date.now()));
  },
};
