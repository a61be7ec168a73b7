import type { Tx } from "../../../platform/module.ts";
import { WriteConflict } from "../../../platform/storage/statements.ts";
import type { Decision } from "../domain/decide.ts";
import { paymentStore } from "../db/store.ts";
import { publishOutcome } from "../events/publish.ts";

/**
 * Writes a decision and publishes its outcomes, in the caller's transaction. Every write states
 * what it was decided from (the account's version, the payment's status or absence); if another
 * transaction changed that meanwhile the write throws WriteConflict, the body rolls back, and the
 * consumer loads and decides the event again.
 */
export function commitDecision(tx: Tx, d: Decision): void {
  const { account } = d;
  if (account) {
    const id = account.next.customerId;
    if (account.expectedVersion === null) paymentStore.insertAccount(tx, account.next, { ifDuplicate: () => new WriteConflict(`account ${id} was created meanwhile`) });
    else paymentStore.updateAccount(tx, account.next, account.expectedVersion, { ifUnchanged: () => new WriteConflict(`account ${id} changed since version ${account.expectedVersion}`) });
  }
  for (const { next, expectedStatus } of d.payments) {
    if (expectedStatus === null) paymentStore.insertPayment(tx, next, { ifDuplicate: () => new WriteConflict(`order ${next.orderId} got a payment meanwhile`) });
    else paymentStore.updatePayment(tx, next, expectedStatus, { ifUnchanged: () => new WriteConflict(`payment of order ${next.orderId} is no longer ${expectedStatus}`) });
  }
  for (const o of d.outcomes) publishOutcome(tx, o);
}
