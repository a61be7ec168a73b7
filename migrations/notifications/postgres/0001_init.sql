-- Messages to customers about the outcome of their orders, built only from orders' events
-- (see modules/notifications/events). One message per order and outcome: the primary key is what
-- makes a re-published outcome (same facts, new event id, so the inbox cannot catch it) a no-op.
-- kind: 'order-confirmed' or 'order-cancelled'. created_at: ms since epoch, when it was recorded.
CREATE TABLE notifications (
  order_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('order-confirmed', 'order-cancelled')),
  customer_id text NOT NULL,
  message text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (order_id, kind)
);
-- A customer's notifications oldest first, ties broken by order and kind, straight from the index.
CREATE INDEX notifications_by_customer ON notifications (customer_id, created_at, order_id, kind);
