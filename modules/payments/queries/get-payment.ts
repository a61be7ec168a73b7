import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import type { Payment } from "../domain/payment.ts";
import { paymentStore } from "../db/store.ts";

/**
 * The payment of one order, or NotFound (`payment-not-found`). A charge parked until the
 * customer's registration arrives is not a payment yet: it is not found either.
 */
export async function getPayment(storage: ModuleStorage, orderId: string): Promise<Payment> {
  const p = await paymentStore.payment(storage, orderId);
  if (!p || p.status === "PENDING") throw domainError(Code.NotFound, "payment-not-found", `order ${orderId} has no payment`, "payments", { orderId });
  return p;
}
