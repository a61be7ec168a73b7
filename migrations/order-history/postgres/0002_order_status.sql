-- The saga's final outcome of each order (orders' OrderConfirmed/OrderCancelled), kept apart from
-- the orders row so that an outcome arriving before its OrderCreated is not lost: it waits here,
-- and the query shows coalesce(order_status.status, orders.status). orders.status (and
-- last_event_at) stay as OrderCreated wrote them: the status at placement, PENDING.
-- A final status never changes: the first one recorded stays, a repeat of it is a no-op, and a
-- contradicting one is rejected by the projection (dead-lettered). at: occurredAt of the outcome.
CREATE TABLE order_status (
  order_id text PRIMARY KEY,
  status text NOT NULL CHECK (status IN ('CONFIRMED', 'CANCELLED')),
  at bigint NOT NULL
);
