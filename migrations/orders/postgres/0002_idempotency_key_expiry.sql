-- Idempotency keys expire (modules.orders.idempotencyKeyRetentionHours): the prune walks this index.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
