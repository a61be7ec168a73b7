-- The placement saga of each order (modules/orders/domain/saga.ts), one row per order, written in
-- the order's own transaction when it is placed and moved by one transition at a time under
-- optimistic concurrency (version).
CREATE TABLE sagas (
  order_id TEXT PRIMARY KEY REFERENCES orders (id),
  state TEXT NOT NULL CHECK (state IN ('AWAITING_PAYMENT', 'AWAITING_STOCK', 'COMPENSATING', 'CONFIRMED', 'CANCELLED', 'STUCK')),
  reason TEXT NOT NULL DEFAULT '',
  -- When the current step times out (ms); NULL once done or stuck. The sweeper walks this index.
  deadline_at INTEGER,
  refund_pending INTEGER NOT NULL DEFAULT 0 CHECK (refund_pending IN (0, 1)),
  release_pending INTEGER NOT NULL DEFAULT 0 CHECK (release_pending IN (0, 1)),
  attempts INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX sagas_deadline ON sagas (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX sagas_state ON sagas (state);

-- Every transition of a saga; `version` is the saga's version the transition produced.
CREATE TABLE saga_history (
  order_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  at INTEGER NOT NULL,
  state TEXT NOT NULL,
  note TEXT NOT NULL,
  PRIMARY KEY (order_id, version)
) WITHOUT ROWID;
