/**
 * The one-hop systems (issue 3's bar, PRODUCT.md's prototypes): HTTP → order + outbox → relay →
 * consumer with inbox → order-history read model, and nothing else consuming. `one-hop-server.ts`
 * runs main.ts with these modules only.
 */

/** The script that runs main.ts with only `ONE_HOP_MODULES`, relative to the repository root. */
export const ONE_HOP_ENTRY = "bench/one-hop-server.ts";

/** The modules one hop needs: the order, its prices and customer, the read model. */
export const ONE_HOP_MODULES: readonly string[] = ["catalog", "customers", "orders", "order-history"];

/**
 * Orders' saga settings for a system without payments: no saga ever finishes there, so admission
 * control (which counts unfinished sagas) is off, and the payment timeout lies past any run (a
 * timed-out saga would publish OrderCancelled, which the projection would then consume too).
 */
export const ONE_HOP_ORDERS_SAGA = { maxInFlight: 0, paymentTimeoutMs: 24 * 3_600_000 } as const;
