-- The order-history read model, built only from events (see modules/order-history/events).
-- Names live in their own tables and are joined at query time: events of different aggregates
-- arrive in any order, so an order may land before its customer or products do.

CREATE TABLE customers (
  id text PRIMARY KEY,
  name text NOT NULL
);

-- version: the catalog's product version; an update applies only when it is newer.
CREATE TABLE products (
  id text PRIMARY KEY,
  name text NOT NULL,
  version bigint NOT NULL
);

-- No foreign keys to customers/products: the names may arrive later than the order.
-- last_event_at: occurredAt of the last event applied to the order (for debugging lag).
CREATE TABLE orders (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL,
  total_cents bigint NOT NULL,
  created_at bigint NOT NULL,
  last_event_at bigint NOT NULL
);
-- A customer's orders newest first, ties broken by id, straight from the index.
CREATE INDEX orders_by_customer ON orders (customer_id, created_at, id);

CREATE TABLE order_lines (
  order_id text NOT NULL REFERENCES orders (id),
  line_no integer NOT NULL,
  product_id text NOT NULL,
  quantity integer NOT NULL,
  unit_price_cents bigint NOT NULL,
  PRIMARY KEY (order_id, line_no)
);
