-- The order-history read model, built only from events (see modules/order-history/events).
-- Names live in their own tables and are joined at query time: events of different aggregates
-- arrive in any order, so an order may land before its customer or products do.

CREATE TABLE customers (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL
);

-- version: the catalog's product version; an update applies only when it is newer.
CREATE TABLE products (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version INTEGER NOT NULL
);

-- No foreign keys to customers/products: the names may arrive later than the order.
-- last_event_at: occurredAt of the last event applied to the order (for debugging lag).
CREATE TABLE orders (
  id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  status TEXT NOT NULL,
  total_cents INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  last_event_at INTEGER NOT NULL
);
-- A customer's orders newest first, ties broken by id, straight from the index.
CREATE INDEX orders_by_customer ON orders (customer_id, created_at, id);

CREATE TABLE order_lines (
  order_id TEXT NOT NULL REFERENCES orders (id),
  line_no INTEGER NOT NULL,
  product_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  unit_price_cents INTEGER NOT NULL,
  PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;
