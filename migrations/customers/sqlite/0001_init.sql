-- Emails are stored trimmed and lower-cased (domain/customer.ts), so this UNIQUE is case-insensitive.
CREATE TABLE customers (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  credit_limit_cents INTEGER NOT NULL CHECK (credit_limit_cents >= 0),
  created_at INTEGER NOT NULL
);
