-- Inventory. A product's stock is event-sourced: its stream of StockRestocked, StockReserved and
-- StockReleased events lives in the platform event store's tables (es_events, es_snapshots,
-- added by withEventStore). The tables here are what that store does not hold.

-- The projection GetStock and ListStock read, written in the same transaction as each append.
-- version: the stream version it reflects. restocked = available + reserved, always.
CREATE TABLE stock (
  product_id TEXT PRIMARY KEY,
  available INTEGER NOT NULL CHECK (available >= 0),
  reserved INTEGER NOT NULL CHECK (reserved >= 0),
  restocked INTEGER NOT NULL CHECK (restocked = available + reserved),
  version INTEGER NOT NULL
);

-- One row per order the saga asked about: what was decided, once. lines: the reserved lines as
-- JSON [{"productId","quantity"}] (empty for FAILED and for a release that came first).
CREATE TABLE reservations (
  order_id TEXT PRIMARY KEY,
  status TEXT NOT NULL CHECK (status IN ('RESERVED', 'FAILED', 'RELEASED')),
  lines TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
