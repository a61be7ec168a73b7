-- The analytics read model (see modules/analytics/events/sales.ts): products from change data
-- capture of catalog's products table, orders from orders' events, and the daily sales they make.

-- The catalog's products as captured from its table; version: the catalog row's version, a
-- change applies only when newer. Kept after a delete, so past sales keep their name.
CREATE TABLE products (
  id text PRIMARY KEY,
  name text NOT NULL,
  price_cents bigint NOT NULL,
  version bigint NOT NULL
);

-- What is known of each order: created_at once OrderCreated arrived (with its lines),
-- confirmed_at/confirmed_day once OrderConfirmed did — in either order. counted = 1 once the
-- order's lines are in daily_product_sales (both facts known). version: optimistic concurrency.
CREATE TABLE orders (
  order_id text PRIMARY KEY,
  created_at bigint,
  confirmed_at bigint,
  confirmed_day text,
  counted integer NOT NULL DEFAULT 0,
  version bigint NOT NULL
);

CREATE TABLE order_lines (
  order_id text NOT NULL,
  line_no integer NOT NULL,
  product_id text NOT NULL,
  quantity integer NOT NULL,
  unit_price_cents bigint NOT NULL,
  PRIMARY KEY (order_id, line_no)
);

-- Confirmed sales per UTC day (YYYY-MM-DD, the confirmation's day) and product.
CREATE TABLE daily_product_sales (
  day text NOT NULL,
  product_id text NOT NULL,
  units_sold bigint NOT NULL,
  revenue_cents bigint NOT NULL,
  orders bigint NOT NULL,
  PRIMARY KEY (day, product_id)
);
-- A product's days, in order.
CREATE INDEX daily_product_sales_by_product ON daily_product_sales (product_id, day);
