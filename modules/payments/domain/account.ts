/**
 * A customer's credit as payments tracks it. Money in integer cents.
 *
 * An account exists *unregistered* (`registeredAt` null, no credit) when an order of the customer
 * arrived before the customer's registration: it holds the order's charge parked until then.
 */
export interface Account {
  readonly customerId: string;
  readonly creditLimitCents: number;
  /** The limit minus the captured payments; never negative, never above the limit. */
  readonly availableCents: number;
  /** When the customer's registration was applied; null while the account only parks charges. */
  readonly registeredAt: number | null;
  /** Optimistic concurrency: +1 per change; a change is written only over the version it was computed from. */
  readonly version: number;
  readonly updatedAt: number;
}

/** True once the customer's registration arrived: only then can the account be charged. */
export function isRegistered(a: Account): boolean {
  return a.registeredAt !== null;
}

/** An account created to park charges for a customer not registered yet. */
export function unregisteredAccount(customerId: string, now: number): Account {
  return { customerId, creditLimitCents: 0, availableCents: 0, registeredAt: null, version: 1, updatedAt: now };
}

/** The account with `changes` applied and its version moved on. */
export function changed(a: Account, changes: Partial<Pick<Account, "creditLimitCents" | "availableCents" | "registeredAt">>, now: number): Account {
  return { ...a, ...changes, version: a.version + 1, updatedAt: now };
}

/** The credit the account has handed out: limit minus available. */
export function creditUsed(a: Account): number {
  return a.creditLimitCents - a.availableCents;
}
