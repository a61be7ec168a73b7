import type { Sql, TransactionSql } from "postgres";
import type { Migration } from "../../module.ts";
import { checksum, MigrationError } from "../migrate.ts";

/**
 * The platform's own tables on Postgres, created in each module's schema before the module's
 * migrations — the same columns as `platformSqliteMigrations`, so the relay and the consumer
 * see the same rows whichever dialect runs:
 * - `seq` is an identity `bigint`; `event_id` is `uuid` (16 bytes instead of 36; UUIDv7 is
 *   time-ordered, so inbox inserts append to the B-tree).
 * - `payload` is `bytea` (protobuf binary). `headers` stays JSON *text*: nothing queries into it
 *   and the relay passes it through, so `jsonb` would only cost a parse and a re-serialisation.
 * - Times are `bigint` milliseconds since the epoch, as on SQLite: envelopes (`occurredAt`) and
 *   the lag metrics are milliseconds, and no time zone can creep in. In psql:
 *   `to_timestamp(created_at / 1000.0)`.
 * - Commit order = `seq` order: a BEFORE INSERT statement trigger takes a transaction-level
 *   advisory lock per schema before any row gets its `seq`, so two transactions writing events
 *   cannot commit in the opposite order of their `seq` (the lock is released only after the
 *   commit is visible). Outbox writers of one module are thereby serialized from their first
 *   outbox insert to their commit: write outbox rows last in a transaction. Published rows stay
 *   a prefix of `seq`, as on SQLite.
 * - An AFTER INSERT statement trigger NOTIFYs `selaras_outbox_<schema>`; Postgres delivers it
 *   at commit (never for a rollback, once per transaction), whoever wrote the rows.
 */
export const platformPostgresMigrations: readonly Migration[] = [
  {
    id: "selaras:0001_outbox_inbox",
    sql: `
CREATE TABLE selaras_outbox (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id uuid NOT NULL,
  aggregate_id text NOT NULL,
  type text NOT NULL,
  payload bytea NOT NULL,
  headers text NOT NULL,
  created_at bigint NOT NULL,
  published_at bigint
);
CREATE INDEX selaras_outbox_unpublished ON selaras_outbox (seq) WHERE published_at IS NULL;
CREATE TABLE selaras_inbox (
  consumer text NOT NULL,
  event_id uuid NOT NULL,
  processed_at bigint NOT NULL,
  PRIMARY KEY (consumer, event_id)
);
CREATE FUNCTION selaras_outbox_serialize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('selaras.outbox'), hashtext(TG_TABLE_SCHEMA));
  RETURN NULL;
END $$;
CREATE FUNCTION selaras_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('selaras_outbox_' || TG_TABLE_SCHEMA, '');
  RETURN NULL;
END $$;
CREATE TRIGGER selaras_outbox_serialize BEFORE INSERT ON selaras_outbox FOR EACH STATEMENT EXECUTE FUNCTION selaras_outbox_serialize();
CREATE TRIGGER selaras_outbox_notify AFTER INSERT ON selaras_outbox FOR EACH STATEMENT EXECUTE FUNCTION selaras_outbox_notify();
`,
  },
];

/** Options of `migratePostgres`. */
export interface PostgresMigrateOptions {
  readonly module: string;
  /** The module's schema: migrations run with `search_path` set to it, and are tracked there. */
  readonly schema: string;
  /** The module's own migrations (`MigrationSet.postgres`); the platform's run first. */
  readonly migrations: readonly Migration[];
}

/**
 * Applies the pending migrations of one module, each in its own transaction, tracked in
 * `<schema>.selaras_migrations` with the same checksums and refusals as `migrateSqlite` (an
 * edited or unknown applied migration stops the start). Run it as the module's role, so the
 * module owns its tables.
 *
 * Each transaction first takes `pg_advisory_xact_lock` for the schema, then reads what is
 * applied: of two processes starting at once, one applies a migration while the other waits,
 * then sees it applied and moves on — nothing runs twice.
 * @returns the ids applied by this call.
 * @example await migratePostgres(sql, { module: "orders", schema: "selaras_orders", migrations: set.postgres ?? [] })
 */
export async function migratePostgres(sql: Sql, opts: PostgresMigrateOptions): Promise<string[]> {
  const all = [...platformPostgresMigrations, ...[...opts.migrations].sort((a, b) => a.id.localeCompare(b.id))];
  const applied: string[] = [];
  for (;;) {
    const next = await sql.begin(async (tx) => {
      await lockAndPrepare(tx, opts.schema);
      const done = await verifyApplied(tx, opts.module, all);
      const m = all.find((x) => !done.has(x.id));
      if (!m) return undefined;
      try {
        await tx.unsafe(m.sql);
      } catch (err) {
        throw new MigrationError(`module ${opts.module}: migration ${m.id} failed: ${(err as Error).message}`);
      }
      await tx`INSERT INTO selaras_migrations (id, checksum, applied_at) VALUES (${m.id}, ${checksum(m.sql)}, ${Date.now()})`;
      return m.id;
    });
    if (next === undefined) return applied;
    applied.push(next);
  }
}

async function lockAndPrepare(tx: TransactionSql, schema: string): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(hashtext('selaras.migrate'), hashtext(${schema}))`;
  // Local to the transaction: the migration's unqualified names land in the module's schema
  // whatever the connection's default search_path is.
  await tx`SELECT set_config('search_path', ${`"${schema}"`}, true)`;
  await tx`CREATE TABLE IF NOT EXISTS selaras_migrations (id text PRIMARY KEY, checksum text NOT NULL, applied_at bigint NOT NULL)`;
}

async function verifyApplied(tx: TransactionSql, module: string, all: readonly Migration[]): Promise<Set<string>> {
  const known = new Map(all.map((m) => [m.id, m]));
  const rows = await tx<{ id: string; checksum: string }[]>`SELECT id, checksum FROM selaras_migrations`;
  for (const row of rows) {
    const m = known.get(row.id);
    if (!m) throw new MigrationError(`module ${module}: the database has migration ${row.id}, which this binary does not know (was it started by a newer version?)`);
    if (checksum(m.sql) !== row.checksum) throw new MigrationError(`module ${module}: migration ${row.id} was edited after it was applied; add a new migration instead`);
  }
  return new Set(rows.map((r) => r.id));
}
