-- Emails are stored trimmed and lower-cased (domain/customer.ts), so this UNIQUE is case-insensitive.
-- (A plain UNIQUE, as in SQLite: both compare text byte-wise, so no lower(email) index is needed.)
CREATE TABLE customers (
  id text PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  credit_limit_cents bigint NOT NULL CHECK (credit_limit_cents >= 0),
  created_at bigint NOT NULL
);
