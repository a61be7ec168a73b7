-- One account per customer. registered_at is NULL while the account only parks charges of orders
-- that arrived before the customer's registration (limit and available stay 0 until it does).
-- version: optimistic concurrency; every change writes over the version it was computed from.
CREATE TABLE accounts (
  customer_id text PRIMARY KEY,
  credit_limit_cents bigint NOT NULL CHECK (credit_limit_cents >= 0),
  available_cents bigint NOT NULL CHECK (available_cents >= 0 AND available_cents <= credit_limit_cents),
  registered_at bigint,
  version bigint NOT NULL,
  updated_at bigint NOT NULL
);

-- One payment per order, whatever happens to it. PENDING: parked until the account is registered.
CREATE TABLE payments (
  order_id text PRIMARY KEY,
  customer_id text NOT NULL,
  amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
  status text NOT NULL CHECK (status IN ('PENDING', 'CAPTURED', 'FAILED', 'REFUNDED', 'VOIDED')),
  reason text NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE INDEX payments_by_customer_status ON payments (customer_id, status, created_at);
