-- The placement saga of each order (modules/orders/domain/saga.ts), one row per order, written in
-- the order's own transaction when it is placed and moved by one transition at a time under
-- optimistic concurrency (version).
CREATE TABLE sagas (
  order_id text PRIMARY KEY REFERENCES orders (id),
  state text NOT NULL CHECK (state IN ('AWAITING_PAYMENT', 'AWAITING_STOCK', 'COMPENSATING', 'CONFIRMED', 'CANCELLED', 'STUCK')),
  reason text NOT NULL DEFAULT '',
  -- When the current step times out (ms); NULL once done or stuck. The sweeper walks this index.
  deadline_at bigint,
  refund_pending integer NOT NULL DEFAULT 0 CHECK (refund_pending IN (0, 1)),
  release_pending integer NOT NULL DEFAULT 0 CHECK (release_pending IN (0, 1)),
  attempts integer NOT NULL DEFAULT 0,
  version bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE INDEX sagas_deadline ON sagas (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX sagas_state ON sagas (state);

-- Every transition of a saga; `version` is the saga's version the transition produced.
CREATE TABLE saga_history (
  order_id text NOT NULL,
  version bigint NOT NULL,
  at bigint NOT NULL,
  state text NOT NULL,
  note text NOT NULL,
  PRIMARY KEY (order_id, version)
);
