-- The analytics read model (see modules/analytics/events/sales.ts): products from change data
-- capture of catalog's products table, orders from orders' events, and the daily sales they make.

-- The catalog's products as captured from its table; version: the catalog row's version, a
-- change applies only when newer. Kept after a delete, so past sales keep their name.
CREATE TABLE products (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  price_cents INTEGER NOT NULL,
  version INTEGER NOT NULL
);

-- What is known of each order: created_at once OrderCreated arrived (with its lines),
-- confirmed_at/confirmed_day once OrderConfirmed did — in either order. counted = 1 once the
-- order's lines are in daily_product_sales (both facts known). version: optimistic concurrency.
CREATE TABLE orders (
  order_id TEXT PRIMARY KEY,
  created_at INTEGER,
  confirmed_at INTEGER,
  confirmed_day TEXT,
  counted INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL
);

CREATE TABLE order_lines (
  order_id TEXT NOT NULL,
  line_no INTEGER NOT NULL,
  product_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  unit_price_cents INTEGER NOT NULL,
  PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;

-- Confirmed sales per UTC day (YYYY-MM-DD, the confirmation's day) and product.
CREATE TABLE daily_product_sales (
  day TEXT NOT NULL,
  product_id TEXT NOT NULL,
  units_sold INTEGER NOT NULL,
  revenue_cents INTEGER NOT NULL,
  orders INTEGER NOT NULL,
  PRIMARY KEY (day, product_id)
) WITHOUT ROWID;
-- A product's days, in order.
CREATE INDEX daily_product_sales_by_product ON daily_product_sales (product_id, day);
