import { randomBytes } from "node:crypto";
import postgres, { type Options, type Sql } from "postgres";
import { dropPublication, dropSlot } from "../../platform/cdc/admin.ts";
import { timedPrefix } from "./stale.ts";

/**
 * The shared test Postgres (trust auth): `SELARAS_TEST_POSTGRES`, default
 * `postgres://postgres@127.0.0.1:5432/test`. It is shared: tests create only uniquely named
 * schemas and roles (`randomPrefix()`) and drop exactly those.
 */
export const TEST_POSTGRES_URL = process.env.SELARAS_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

/** Connection options for `user` (default: the URL's, a superuser) on the test database. */
export function pgOptions(user?: string): Options<{}> {
  const url = new URL(TEST_POSTGRES_URL);
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    database: url.pathname.slice(1),
    username: user ?? decodeURIComponent(url.username),
    max: 4,
    onnotice: () => {},
  };
}

/** A client for `user` (default: the administrator). Call `end()`. */
export function pgConnect(user?: string, extra: Options<{}> = {}): Sql {
  return postgres({ ...pgOptions(user), ...extra });
}

/** A fresh prefix for schema and role names, e.g. `t_tp3u61_3fa9c2` (see `timedPrefix`). */
export function randomPgPrefix(): string {
  return timedPrefix("t_", randomBytes(3).toString("hex"));
}

/** Drops the schemas and then the roles a test created (and nothing else). */
export async function dropPg(admin: Sql, schemas: readonly string[], roles: readonly string[]): Promise<void> {
  for (const s of schemas) await admin.unsafe(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  for (const r of roles) {
    const [exists] = await admin`SELECT 1 FROM pg_roles WHERE rolname = ${r}`;
    if (!exists) continue;
    // Ends the role's sessions first (a lingering pooled connection would block DROP ROLE).
    await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${r}`;
    // Under the provisioning lock: DROP OWNED revokes the role's CONNECT, an update of the same
    // pg_database row that a platform provisioning at the same time grants on — concurrently,
    // one of them fails with "tuple concurrently updated".
    await admin.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext('selaras.provision'), 0)`;
      await tx.unsafe(`DROP OWNED BY "${r}"`);
      await tx.unsafe(`DROP ROLE "${r}"`);
    });
  }
}

/**
 * Drops every replication slot, publication, schema and role named `<prefix>_…`, and the schema
 * `<prefix>` (a test
 * topology's modules and their change capture), sessions first. A slot left behind would keep
 * WAL on the shared server for ever.
 */
export async function dropPgPrefix(prefix: string): Promise<void> {
  if (!/^[a-z][a-z0-9_]*$/.test(prefix)) throw new Error(`not a test prefix: ${prefix}`);
  const admin = pgConnect();
  try {
    const like = `${prefix.replace(/_/g, "\\_")}\\_%`;
    for (const { n } of await admin<{ n: string }[]>`SELECT slot_name AS n FROM pg_replication_slots WHERE slot_name LIKE ${like}`) await dropSlot(admin, n);
    for (const { n } of await admin<{ n: string }[]>`SELECT pubname AS n FROM pg_publication WHERE pubname LIKE ${like}`) await dropPublication(admin, n);
    const schemas = (await admin<{ n: string }[]>`SELECT nspname AS n FROM pg_namespace WHERE nspname LIKE ${like} OR nspname = ${prefix}`).map((r) => r.n);
    const roles = (await admin<{ n: string }[]>`SELECT rolname AS n FROM pg_roles WHERE rolname LIKE ${like}`).map((r) => r.n);
    await dropPg(admin, schemas, roles);
  } finally {
    await admin.end();
  }
}

/** The `storage` config of a topology on the test Postgres under `prefix` (see `dropPgPrefix`). */
export function pgStorageConfig(prefix: string) {
  return { kind: "postgres" as const, postgres: { url: TEST_POSTGRES_URL, schemaPrefix: prefix } };
}
