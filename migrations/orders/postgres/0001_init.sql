CREATE TABLE orders (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
  total_cents bigint NOT NULL CHECK (total_cents >= 0),
  reason text NOT NULL DEFAULT '',
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

CREATE TABLE order_lines (
  order_id text NOT NULL REFERENCES orders (id),
  line_no integer NOT NULL CHECK (line_no >= 0),
  product_id text NOT NULL,
  quantity integer NOT NULL CHECK (quantity > 0),
  unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
  line_total_cents bigint NOT NULL CHECK (line_total_cents >= 0),
  PRIMARY KEY (order_id, line_no)
);

-- One row per client-chosen Idempotency-Key: the hash of the request it first came with and the
-- order it created. The primary key makes a second order for the same key impossible.
CREATE TABLE idempotency_keys (
  key text PRIMARY KEY,
  request_hash text NOT NULL,
  order_id text NOT NULL REFERENCES orders (id),
  created_at bigint NOT NULL
);
