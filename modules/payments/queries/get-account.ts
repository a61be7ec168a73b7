import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { isRegistered, type Account } from "../domain/account.ts";
import { paymentStore } from "../db/store.ts";

/** A customer's account, or NotFound (`account-not-found`) until the customer's registration arrived. */
export async function getAccount(storage: ModuleStorage, customerId: string): Promise<Account> {
  const a = await paymentStore.account(storage, customerId);
  // An account that only parks charges of an unregistered customer has no credit to show yet.
  if (!a || !isRegistered(a)) throw domainError(Code.NotFound, "account-not-found", `customer ${customerId} has no account`, "payments", { customerId });
  return a;
}
