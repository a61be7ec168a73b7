import type { Sql } from "postgres";

/** What one module gets on Postgres: its schema and the LOGIN role that alone may use it. */
export interface ModuleGrant {
  /** kebab-case module name, e.g. `order-history`. */
  readonly module: string;
  /** The module's schema, e.g. `selaras_order_history` (see `moduleSchemaName`). */
  readonly schema: string;
  /** The module's LOGIN role, e.g. `selaras_order_history`. */
  readonly role: string;
  /** The database the role may connect to. */
  readonly database: string;
  /** Set as the role's password when given (otherwise authenticate as pg_hba.conf says). */
  readonly password?: string;
}

const IDENT = /^[a-z_][a-z0-9_]*$/;
// The outbox channel is `selaras_outbox_<schema>` and channel names are limited to 63 bytes.
const MAX_SCHEMA = 63 - "selaras_outbox_".length;

function ident(name: string, what: string, max = 63): string {
  if (!IDENT.test(name) || name.length > max) throw new Error(`invalid ${what} "${name}": use [a-z0-9_], at most ${max} characters`);
  return `"${name}"`;
}

/**
 * The schema (and by default the role) of a module: `<prefix>_<module>` with `-` turned into `_`.
 * @example moduleSchemaName("selaras", "order-history") // "selaras_order_history"
 */
export function moduleSchemaName(prefix: string, module: string): string {
  const name = `${prefix}_${module.replace(/-/g, "_")}`;
  ident(name, "schema name", MAX_SCHEMA);
  return name;
}

/**
 * The SQL that provisions one module, for an operator to run as a superuser (or a role with
 * CREATEROLE that owns the database) — or for `provisionModule` to run when the platform may.
 * Every statement is idempotent. The schema belongs to the administrator, not to the module:
 * the module role gets USAGE + CREATE on it (it creates and owns its tables through its
 * migrations) and nothing anywhere else, so reading another module's table fails in Postgres
 * itself with `permission denied` (42501) — even for raw SQL.
 *
 * Database-wide hardening (the `public` schema, CONNECT for PUBLIC) is separate:
 * see `hardenDatabaseSql`.
 *
 * @example console.log(provisionSql({ module: "orders", schema: "selaras_orders", role: "selaras_orders", database: "shop" }))
 */
export function provisionSql(g: ModuleGrant): string {
  const schema = ident(g.schema, "schema name", MAX_SCHEMA);
  const role = ident(g.role, "role name");
  const db = ident(g.database, "database name");
  const lines = [
    `-- module ${g.module}: schema ${g.schema}, role ${g.role}`,
    `DO $$ BEGIN`,
    `  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${g.role}') THEN`,
    `    CREATE ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;`,
    `  END IF;`,
    `END $$;`,
    `CREATE SCHEMA IF NOT EXISTS ${schema};`,
    `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC;`,
    `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${role};`,
    `GRANT CONNECT ON DATABASE ${db} TO ${role};`,
    `ALTER ROLE ${role} IN DATABASE ${db} SET search_path TO ${schema};`,
  ];
  if (g.password !== undefined) lines.push(`ALTER ROLE ${role} PASSWORD '${g.password.replace(/'/g, "''")}';`);
  return lines.join("\n") + "\n";
}

/**
 * Once per database, for the operator: nobody may connect or use `public` unless granted.
 * Without it a module role could still create nothing (Postgres 15 revokes CREATE on `public`)
 * but could read whatever someone put in `public`, and any role could connect.
 */
export function hardenDatabaseSql(database: string): string {
  const db = ident(database, "database name");
  return `REVOKE CONNECT, TEMPORARY ON DATABASE ${db} FROM PUBLIC;\nREVOKE ALL ON SCHEMA public FROM PUBLIC;\n`;
}

/**
 * Runs `provisionSql` for each module on an administrator connection, in one transaction under
 * an advisory lock: two processes provisioning at once do not race on `CREATE ROLE` (a unique
 * violation in `pg_authid`) or `CREATE SCHEMA`; the second finds everything in place. Roles are
 * cluster-wide while advisory locks are per database, so provision one database at a time.
 */
export async function provisionModules(admin: Sql, grants: readonly ModuleGrant[], opts: { hardenDatabase?: boolean } = {}): Promise<void> {
  const text = grants.map(provisionSql).join("");
  const harden = opts.hardenDatabase && grants[0] ? hardenDatabaseSql(grants[0].database) : "";
  await admin.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('selaras.provision'), 0)`;
    await tx.unsafe(harden + text);
  });
}
