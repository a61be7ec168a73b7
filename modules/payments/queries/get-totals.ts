import type { ModuleStorage } from "../../../platform/module.ts";
import { paymentStore, type Totals } from "../db/store.ts";

/**
 * Sums over every payment and account, from one snapshot: what is captured now, and the credit
 * the accounts have handed out. The two are equal whenever every charge and refund wrote its
 * payment and its account in one transaction — the invariant an operator (or a test) checks.
 */
export function getTotals(storage: ModuleStorage): Promise<Totals> {
  return paymentStore.totals(storage);
}
