/** A customer as the customers module owns it. Money in integer minor units. */
export interface Customer {
  readonly id: string;
  /** Trimmed and lower-cased (see `normalizeEmail`): the identity used for uniqueness. */
  readonly email: string;
  readonly name: string;
  readonly creditLimitCents: number;
  readonly createdAt: number;
}

/**
 * The canonical form of an email address: trimmed and lower-cased, so `Ana@X.com` and
 * `ana@x.com` are one customer. Lower-casing the local part is stricter than RFC 5321, but no
 * real mail provider treats it as case-sensitive and two accounts differing only in case are a
 * support problem, not a feature.
 */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** A new customer from validated input; the email is normalised here so every caller stores the same form. */
export function newCustomer(input: { id: string; email: string; name: string; creditLimitCents: number; now: number }): Customer {
  return { id: input.id, email: normalizeEmail(input.email), name: input.name, creditLimitCents: input.creditLimitCents, createdAt: input.now };
}
