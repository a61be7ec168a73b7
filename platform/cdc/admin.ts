import type { Sql } from "postgres";

/** A table to capture. */
export interface TableRef {
  readonly schema: string;
  readonly table: string;
}

/** What `ensureSlotAndPublication` sets up. */
export interface SlotAndPublication {
  /** Replication slot name: lower-case letters, digits and `_` (Postgres' rule), at most 63. */
  readonly slot: string;
  /** Publication name (an unquoted identifier). */
  readonly publication: string;
  readonly tables: readonly TableRef[];
  /**
   * Set `REPLICA IDENTITY FULL` on each table (default true), so updates and deletes carry the
   * whole `before` row. Without it `before` holds only the key (deletes, key changes) or is null.
   * Changing it takes a brief ACCESS EXCLUSIVE lock, so it is done only when not set already.
   */
  readonly replicaIdentityFull?: boolean;
  /** What the publication publishes (default: all four, Postgres' own default). */
  readonly publish?: readonly PublishedOperation[];
}

/** The operations a publication can publish (`CREATE PUBLICATION … WITH (publish = …)`). */
export type PublishedOperation = "insert" | "update" | "delete" | "truncate";

const ALL_OPERATIONS: readonly PublishedOperation[] = ["insert", "update", "delete", "truncate"];

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/** Throws unless `slot` is a valid replication slot name. */
export function assertSlotName(slot: string): void {
  if (!SLOT_NAME.test(slot)) throw new Error(`invalid replication slot name ${JSON.stringify(slot)}: use a-z, 0-9 and _`);
}

/** Throws unless `name` is a plain identifier (no quoting needed in a publication list). */
export function assertPublicationName(name: string): void {
  if (!IDENTIFIER.test(name)) throw new Error(`invalid publication name ${JSON.stringify(name)}`);
}

/** A double-quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Creates (idempotently) what a CDC reader needs: REPLICA IDENTITY FULL on the tables, the
 * publication for exactly those tables (an existing one is set to them), then the permanent
 * pgoutput slot. The publication comes first on purpose: the slot decodes WAL with the catalog
 * as of each change, and a publication younger than the slot's start fails decoding.
 *
 * Privileges: REPLICATION (or superuser) for the slot; ownership of the tables for the
 * publication and the replica identity, plus CREATE on the database for a new publication.
 * Creating a slot waits for transactions already running to end — do not call it from inside
 * one, or with another session of yours holding one open.
 * @example await ensureSlotAndPublication(admin, { slot: "orders_cdc", publication: "orders_cdc", tables: [{ schema: "orders", table: "orders" }] });
 */
export async function ensureSlotAndPublication(sql: Sql, opts: SlotAndPublication): Promise<{ slotCreated: boolean; publicationCreated: boolean }> {
  assertSlotName(opts.slot);
  assertPublicationName(opts.publication);
  if (opts.tables.length === 0) throw new Error("ensureSlotAndPublication: no tables");
  if (opts.replicaIdentityFull ?? true) await ensureReplicaIdentityFull(sql, opts.tables);
  const publicationCreated = await ensurePublication(sql, opts.publication, opts.tables, opts.publish);
  const slotCreated = await ensureSlot(sql, opts.slot, opts.publication);
  return { slotCreated, publicationCreated };
}

/** Sets REPLICA IDENTITY FULL on each table where it is not set already (needs ownership). */
export async function ensureReplicaIdentityFull(sql: Sql, tables: readonly TableRef[]): Promise<void> {
  for (const t of tables) {
    const [row] = await sql<{ ident: string }[]>`
      SELECT c.relreplident AS ident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ${t.schema} AND c.relname = ${t.table}`;
    if (!row) throw new Error(`table ${t.schema}.${t.table} does not exist`);
    if (row.ident !== "f") await sql.unsafe(`ALTER TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.table)} REPLICA IDENTITY FULL`);
  }
}

/**
 * Creates the publication for exactly `tables` and `publish` (default: every operation), or sets
 * an existing one to them; true when created.
 */
export async function ensurePublication(sql: Sql, publication: string, tables: readonly TableRef[], publish: readonly PublishedOperation[] = ALL_OPERATIONS): Promise<boolean> {
  const list = tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`).join(", ");
  const ops = ALL_OPERATIONS.filter((o) => publish.includes(o));
  if (ops.length === 0) throw new Error(`publication ${publication}: nothing to publish`);
  return sql.begin(async (tx) => {
    // Two readers starting at once: the second waits, then finds the publication.
    await tx`SELECT pg_advisory_xact_lock(hashtext(${`selaras-cdc:${publication}`}))`;
    const [exists] = await tx<{ insert: boolean; update: boolean; delete: boolean; truncate: boolean }[]>`
      SELECT pubinsert AS insert, pubupdate AS update, pubdelete AS delete, pubtruncate AS truncate FROM pg_publication WHERE pubname = ${publication}`;
    if (!exists) {
      await tx.unsafe(`CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${list} WITH (publish = '${ops.join(", ")}')`);
      return true;
    }
    if (ALL_OPERATIONS.some((o) => exists[o] !== ops.includes(o))) {
      await tx.unsafe(`ALTER PUBLICATION ${quoteIdent(publication)} SET (publish = '${ops.join(", ")}')`);
    }
    const current = await tx<{ schema: string; table: string }[]>`
      SELECT schemaname AS schema, tablename AS table FROM pg_publication_tables WHERE pubname = ${publication}`;
    const key = (t: TableRef) => `${t.schema}.${t.table}`;
    const want = new Set(tables.map(key));
    if (current.length !== want.size || current.some((t) => !want.has(key(t)))) {
      await tx.unsafe(`ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${list}`);
    }
    return false;
  });
}

/**
 * Fails, naming `what` and both privileges, unless the connection's role may create and stream
 * replication slots (REPLICATION or superuser). A role that is not a superuser is made a member
 * of `ownerRole` when `grant` (provisioning is on): publications and REPLICA IDENTITY need the
 * tables' owner.
 * @example await assertReplicationRole(sql, "cannot capture tables of module catalog", { ownerRole: "selaras_catalog", grant: true });
 */
export async function assertReplicationRole(sql: Sql, what: string, opts: { ownerRole: string; grant: boolean }): Promise<void> {
  const [me] = await sql<{ name: string; sup: boolean; repl: boolean }[]>`
    SELECT current_user AS name, rolsuper AS sup, rolreplication AS repl FROM pg_roles WHERE rolname = current_user`;
  if (!me!.sup && !me!.repl) {
    throw new Error(`${what}: role ${me!.name} has neither REPLICATION nor SUPERUSER (see platform/cdc/README.md, Privileges)`);
  }
  if (!me!.sup && opts.grant && me!.name !== opts.ownerRole) await sql.unsafe(`GRANT ${quoteIdent(opts.ownerRole)} TO CURRENT_USER`);
}

/**
 * Fails, naming `what` (and `orElse`, the way around it), unless the server decodes its WAL
 * logically (`wal_level = logical`, which only a server restart can change): without it no slot
 * can be created or streamed.
 * @example await assertLogicalWal(sql, 'outbox.relay = "cdc" (module orders)', 'use outbox.relay = "poll"');
 */
export async function assertLogicalWal(sql: Sql, what: string, orElse?: string): Promise<void> {
  const [row] = await sql<{ level: string }[]>`SELECT current_setting('wal_level') AS level`;
  if (row?.level !== "logical") {
    const fix = `set it in postgresql.conf and restart the server${orElse ? `, or ${orElse}` : ""}`;
    throw new Error(`${what} needs wal_level = logical, but the server runs with wal_level = ${row?.level ?? "unknown"}: ${fix}`);
  }
}

async function ensureSlot(sql: Sql, slot: string, publication: string): Promise<boolean> {
  const check = async () => {
    const [s] = await sql<{ plugin: string | null; database: string | null; here: string }[]>`
      SELECT plugin, database, current_database() AS here FROM pg_replication_slots WHERE slot_name = ${slot}`;
    if (s && (s.plugin !== "pgoutput" || s.database !== s.here)) {
      throw new Error(`replication slot ${slot} exists but is not a pgoutput slot of database ${s.here} (plugin ${s.plugin}, database ${s.database})`);
    }
    return s !== undefined;
  };
  for (let attempt = 1; ; attempt++) {
    if (await check()) return false;
    try {
      await sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
    } catch (err) {
      if ((err as { code?: string }).code !== "42710") throw err; // created meanwhile by another reader
      await check();
      return false;
    }
    if ((await decodable(sql, slot, publication)) || attempt >= 3) return true;
    // Nobody has read from the new slot yet: a fresh one, a moment later, loses nothing.
    await dropSlot(sql, slot);
  }
}

/**
 * Whether a new slot can decode what was committed since it was created. Seen on PostgreSQL 15
 * under concurrent DDL of other sessions: a slot created while their transactions ran fails
 * every decoding with "could not map filenode … to relation OID", for ever.
 */
export async function decodable(sql: Sql, slot: string, publication: string): Promise<boolean> {
  try {
    await sql`SELECT count(*) FROM pg_logical_slot_peek_binary_changes(${slot}, NULL, NULL, 'proto_version', '1', 'publication_names', ${`"${publication}"`})`;
    return true;
  } catch (err) {
    if (/could not map filenode/.test((err as Error).message)) return false;
    throw err;
  }
}

/**
 * Drops a replication slot (so the server stops keeping WAL for it). With `terminate` (default),
 * first ends the walsender using it — a slot in use cannot be dropped. Returns whether it existed.
 * @example await dropSlot(admin, "orders_cdc");
 */
export async function dropSlot(sql: Sql, slot: string, opts: { terminate?: boolean; attempts?: number } = {}): Promise<boolean> {
  assertSlotName(slot);
  const attempts = opts.attempts ?? 50;
  for (let attempt = 1; ; attempt++) {
    const [s] = await sql<{ pid: number | null }[]>`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${slot}`;
    if (!s) return false;
    if (s.pid !== null && (opts.terminate ?? true)) await sql`SELECT pg_terminate_backend(${s.pid})`;
    try {
      await sql`SELECT pg_drop_replication_slot(${slot})`;
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "42704") return false; // dropped meanwhile
      // 55006: still active — a terminated walsender takes a moment to let go of the slot.
      if (code !== "55006" || attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 20 * attempt));
    }
  }
}

/** Drops a publication if it exists. */
export async function dropPublication(sql: Sql, publication: string): Promise<void> {
  assertPublicationName(publication);
  await sql.unsafe(`DROP PUBLICATION IF EXISTS ${quoteIdent(publication)}`);
}

/**
 * How many bytes of WAL the server keeps for `slot` beyond what its consumer confirmed:
 * `pg_current_wal_lsn() - confirmed_flush_lsn`. A number that only grows means a stuck or
 * absent consumer and a disk filling up — the metric to alert on.
 * @example const bytes = await slotLag(admin, "orders_cdc");
 */
export async function slotLag(sql: Sql, slot: string): Promise<number> {
  const [row] = await sql<{ lag: number | null }[]>`
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag
    FROM pg_replication_slots WHERE slot_name = ${slot}`;
  if (!row) throw new Error(`replication slot ${slot} does not exist`);
  return row.lag ?? 0;
}
