import postgres, { type Sql } from "postgres";
import type { Migration } from "../module.ts";
import type { Tracer } from "../observability/trace.ts";
import type { PlatformStorage } from "../storage/module-storage.ts";
import type { PgModuleTarget } from "../storage/open.ts";
import { migratePostgres } from "../storage/postgres/migrate.ts";
import { PgModuleStorage } from "../storage/postgres/storage.ts";
import { numbered, RECORD_UPSERT, recordTableSql, recordValues, type RebuildRecord } from "./record.ts";
import { quoteIdent, type RebuildTarget } from "./target.ts";

/** Postgres: lock_not_available, what LOCK … NOWAIT answers when a table is in use. */
const LOCK_NOT_AVAILABLE = "55P03";
/** How long the swap keeps trying to lock the live tables, each try without waiting. */
const SWAP_LOCK_TIMEOUT_MS = 10_000;

// As for module schemas: the outbox's NOTIFY channel `selaras_outbox_<schema>` must fit in 63 bytes.
const MAX_SCHEMA = 63 - "selaras_outbox_".length;

/**
 * The SQL that gives a module's role a schema of its own for rebuilt copies — like its module
 * schema (owned by the administrator, USAGE + CREATE for the role alone) but without touching
 * the role's search_path. Idempotent.
 */
export function copySchemaSql(schema: string, role: string): string {
  return `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)};\nREVOKE ALL ON SCHEMA ${quoteIdent(schema)} FROM PUBLIC;\nGRANT USAGE, CREATE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(role)};\n`;
}

/**
 * A schema for the copy next to the module's, created when provisioning is allowed (as the
 * administrator) and emptied of whatever an earlier rebuild left, migrated like the module's own
 * schema as the module's role — which owns every table it creates there. The swap, in one
 * transaction as that role, drops the live read-model tables and moves the rebuilt ones into the
 * module's schema (`ALTER TABLE … SET SCHEMA`, with their indexes and constraints). Readers
 * waiting for the tables' lock meanwhile find the new tables by name once it commits (Postgres
 * re-plans prepared statements whose tables changed).
 */
export async function openPgTarget(opts: {
  live: PgModuleTarget;
  schema: string;
  provision: boolean;
  migrations: readonly Migration[];
  poolSize: number;
  maxBatch: number;
  tracer: Tracer;
}): Promise<RebuildTarget> {
  const { live, schema } = opts;
  if (!/^[a-z_][a-z0-9_]*$/.test(schema) || schema.length > MAX_SCHEMA) throw new Error(`schema name ${schema} for the rebuilt copy is not usable: [a-z0-9_], at most ${MAX_SCHEMA} characters (a shorter storage.postgres.schemaPrefix helps)`);
  if (opts.provision) await provisionCopySchema(live, schema);
  const connection = { ...(live.options.connection as Record<string, unknown>), search_path: schema, application_name: `selaras:${schema}` };
  const sql = postgres({ ...live.options, connection, max: opts.poolSize });
  let storage: PgModuleStorage | undefined;
  try {
    const [usable] = await sql<{ ok: boolean | null }[]>`SELECT has_schema_privilege(current_user, ${schema}, 'USAGE, CREATE') AS ok WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ${schema})`;
    if (!usable?.ok) throw new Error(`schema ${schema} does not exist or role ${live.role} may not create in it; as a superuser run:\n${copySchemaSql(schema, live.role)}`);
    await emptySchema(sql, schema);
    await migratePostgres(sql, { module: live.module, schema, migrations: opts.migrations });
    storage = new PgModuleStorage({ module: live.module, schema, sql, leaseOptions: { ...live.options, connection }, tracer: opts.tracer, maxBatch: opts.maxBatch });
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  const copy = storage;
  return {
    storage: copy,
    location: `schema ${schema}`,
    async swapInto(liveStorage, tables, record) {
      try {
        await swapTables(sql, liveSchema(liveStorage), schema, tables, record);
        // Swapped: what is left of the copy (its platform tables) goes, or the next rebuild removes it.
        await emptySchema(sql, schema).catch(() => {});
      } finally {
        await copy.close();
      }
    },
    async keep(record) {
      await sql.unsafe(recordTableSql("postgres"));
      await sql.unsafe(numbered(RECORD_UPSERT), recordValues(record) as never[]);
      await copy.close();
    },
    async discard() {
      try {
        await emptySchema(sql, schema);
      } finally {
        await copy.close();
      }
    },
  };
}

function liveSchema(live: PlatformStorage): string {
  if (!(live instanceof PgModuleStorage)) throw new Error(`module ${live.module}: the live storage is not Postgres`);
  return live.schema;
}

async function provisionCopySchema(live: PgModuleTarget, schema: string): Promise<void> {
  const admin = postgres({ ...live.admin, max: 1 });
  try {
    await admin.begin(async (tx) => {
      // The platform's provisioning lock: CREATE SCHEMA IF NOT EXISTS still races otherwise.
      await tx`SELECT pg_advisory_xact_lock(hashtext('selaras.provision'), 0)`;
      await tx.unsafe(copySchemaSql(schema, live.role));
    });
  } catch (err) {
    throw new Error(`could not provision schema ${schema} for the rebuilt copy as ${live.admin.username} (storage.postgres.url): ${(err as Error).message}`, { cause: err });
  } finally {
    await admin.end({ timeout: 1 });
  }
}

/** Drops everything in `schema` (the role's own objects: an earlier copy), so migrations start afresh. */
async function emptySchema(sql: Sql, schema: string): Promise<void> {
  // Views before tables, tables before the sequences and types that outlive them (identity
  // sequences and row types go with their tables).
  for (const [kinds, drop] of [
    [["v"], "VIEW"],
    [["m"], "MATERIALIZED VIEW"],
    [["r", "p"], "TABLE"],
    [["f"], "FOREIGN TABLE"],
    [["S"], "SEQUENCE"],
    [["c"], "TYPE"],
  ] as const) {
    const rows = await sql<{ name: string }[]>`
      SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ${schema} AND c.relkind IN ${sql(kinds as unknown as string[])}`;
    for (const r of rows) await sql.unsafe(`DROP ${drop} IF EXISTS ${r.name} CASCADE`);
  }
  const routines = await sql<{ name: string }[]>`SELECT p.oid::regprocedure::text AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ${schema}`;
  for (const r of routines) await sql.unsafe(`DROP ROUTINE IF EXISTS ${r.name} CASCADE`);
  const types = await sql<{ name: string }[]>`
    SELECT format('%I.%I', n.nspname, t.typname) AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = ${schema} AND t.typtype IN ('e', 'd', 'r')`;
  for (const t of types) await sql.unsafe(`DROP TYPE IF EXISTS ${t.name} CASCADE`);
}

async function swapTables(sql: Sql, live: string, copy: string, tables: readonly string[], record: RebuildRecord): Promise<void> {
  const columns = await sql<{ schema: string; table: string; cols: string }[]>`
    SELECT table_schema AS schema, table_name AS table, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS cols
    FROM information_schema.columns WHERE table_schema IN (${live}, ${copy}) AND table_name IN ${sql(tables as string[])} GROUP BY 1, 2`;
  for (const t of tables) {
    const a = columns.find((c) => c.schema === live && c.table === t)?.cols;
    const b = columns.find((c) => c.schema === copy && c.table === t)?.cols;
    if (!a || a !== b) throw new Error(`read-model table ${t}: the live table and the rebuilt one differ (${a ?? "missing"} / ${b ?? "missing"})`);
  }
  const liveTables = tables.map((t) => `${quoteIdent(live)}.${quoteIdent(t)}`).join(", ");
  for (let attempt = 1, deadline = Date.now() + SWAP_LOCK_TIMEOUT_MS; ; attempt++) {
    try {
      await sql.begin(async (tx) => {
        // Every live table at once or none (NOWAIT): waiting for one while holding another could
        // deadlock with a reader that joins them in another order — and Postgres would then
        // cancel one of the two, possibly the reader.
        await tx.unsafe(`LOCK TABLE ${liveTables} IN ACCESS EXCLUSIVE MODE NOWAIT`);
        await tx.unsafe(`DROP TABLE ${liveTables}`);
        for (const t of tables) await tx.unsafe(`ALTER TABLE ${quoteIdent(copy)}.${quoteIdent(t)} SET SCHEMA ${quoteIdent(live)}`);
        await tx.unsafe(`SET LOCAL search_path TO ${quoteIdent(live)}`);
        await tx.unsafe(recordTableSql("postgres"));
        await tx.unsafe(numbered(RECORD_UPSERT), recordValues(record) as never[]);
      });
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw err;
      if (Date.now() > deadline) throw new Error(`could not lock the live tables of the read model for the swap within ${SWAP_LOCK_TIMEOUT_MS / 1000} s (readers or writers held them throughout); nothing changed, try again`, { cause: err });
      await new Promise((r) => setTimeout(r, Math.min(2 * attempt, 50) * (0.5 + Math.random())));
    }
  }
}
