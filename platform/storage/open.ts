import { join } from "node:path";
import postgres, { type Options, type Sql } from "postgres";
import type { PlatformConfig } from "../config/schema.ts";
import type { ModuleManifest } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Tracer } from "../observability/trace.ts";
import { migrateSqlite, MigrationError } from "./migrate.ts";
import { SqliteModuleStorage, type PlatformStorage } from "./module-storage.ts";
import { migratePostgres } from "./postgres/migrate.ts";
import { moduleSchemaName, provisionModules, type ModuleGrant } from "./postgres/provision.ts";
import { bunSqlClient, int8AsNumber, resolvePgClient, type PgClient } from "./postgres/client.ts";
import { PgModuleStorage } from "./postgres/storage.ts";
import { openSqlite } from "./sqlite.ts";

/** What opening storage needs besides the config. */
export interface OpenStorageDeps {
  readonly tracer: Tracer;
  readonly logger: Logger;
  /** Told each group commit's size, per module. */
  readonly onCommit: (module: string) => (bodies: number) => void;
  /** Modules whose outbox the relay reads from the WAL (`outbox.relay = "cdc"`): no LISTEN connection for them. */
  readonly walRelayed?: ReadonlySet<string>;
  /** The caller owns the SQLite files (`ownFiles`): each storage is their sole writer (`PlatformStorage.soleWriter`). */
  readonly owned?: boolean;
}

/** A module's SQLite file. */
export const moduleFile = (config: PlatformConfig, module: string): string => join(config.dataDir, `${module}.db`);

/**
 * Opens and migrates the storage of every module this process hosts: one SQLite file each, or
 * (storage.kind = postgres) one schema under its own role each — provisioned first when allowed.
 * On failure, whatever was opened is closed again.
 */
export async function openModuleStorage(config: PlatformConfig, manifests: readonly ModuleManifest<any>[], deps: OpenStorageDeps): Promise<Map<string, PlatformStorage>> {
  const opened = new Map<string, PlatformStorage>();
  try {
    if (config.storage.kind === "postgres") await openPostgres(config, manifests, deps, opened);
    else await openAllSqlite(config, manifests, deps, opened);
    return opened;
  } catch (err) {
    for (const s of opened.values()) await s.close().catch(() => {});
    throw err;
  }
}

async function openAllSqlite(config: PlatformConfig, manifests: readonly ModuleManifest<any>[], deps: OpenStorageDeps, opened: Map<string, PlatformStorage>): Promise<void> {
  for (const manifest of manifests) {
    const conn = await openSqlite(moduleFile(config, manifest.name), config.sqlite, deps.logger);
    let applied: string[];
    try {
      applied = migrateSqlite(conn, manifest.name, manifest.migrations.sqlite);
    } catch (err) {
      conn.close();
      throw err;
    }
    if (applied.length > 0) deps.logger.info("migrations applied", { module: manifest.name, applied });
    opened.set(manifest.name, new SqliteModuleStorage(manifest.name, conn, deps.tracer, deps.onCommit(manifest.name), deps.owned === true));
  }
}

/** How a module reaches Postgres: its schema, role and connection options. */
export interface PgModuleTarget {
  readonly module: string;
  readonly schema: string;
  readonly role: string;
  /** The module role's connection. */
  readonly options: Options<{}>;
  /** The administrator's connection to the same database (provisioning). */
  readonly admin: Options<{}>;
}

/** Where each module's schema and role are, from `storage.postgres` (no connection is made). */
export function pgTargets(config: PlatformConfig, modules: readonly string[]): PgModuleTarget[] {
  const pg = config.storage.postgres;
  const admin = new URL(pg.url);
  return modules.map((module) => {
    const schema = moduleSchemaName(pg.schemaPrefix, module);
    const own = pg.moduleUrls[module];
    const url = own ? new URL(own) : new URL(admin.href);
    if (!own) {
      url.username = schema;
      url.password = "";
    }
    const adminOfDb = new URL(admin.href);
    adminOfDb.host = url.host;
    adminOfDb.pathname = url.pathname;
    return { module, schema, role: own ? decodeURIComponent(url.username) : schema, options: pgOptions(url, schema), admin: pgOptions(adminOfDb) };
  });
}

/** postgres.js options: int8 as JS number (ids, cents and ms all fit 2^53), notices off, `search_path` pinned. */
function pgOptions(url: URL, schema?: string): Options<{}> {
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    database: decodeURIComponent(url.pathname.slice(1)) || "postgres",
    username: decodeURIComponent(url.username) || "postgres",
    ...(url.password && { password: decodeURIComponent(url.password) }),
    onnotice: () => {},
    // No array-type lookup on connect: nothing here binds arrays, and that lookup's rejection on a
    // refused connection escapes postgres.js unhandled.
    fetch_types: false,
    types: int8AsNumber,
    ...(schema && { connection: { search_path: schema, application_name: `selaras:${schema}` } }),
  };
}

async function openPostgres(config: PlatformConfig, manifests: readonly ModuleManifest<any>[], deps: OpenStorageDeps, opened: Map<string, PlatformStorage>): Promise<void> {
  const pg = config.storage.postgres;
  const targets = pgTargets(config, manifests.map((m) => m.name));
  for (const m of manifests) {
    if (!m.migrations.postgres) throw new Error(`module ${m.name} has no Postgres migrations (migrations/${m.name}/postgres): it cannot run with storage.kind = postgres`);
  }
  if (pg.provision) {
    // One transaction per database: roles are cluster-wide, the provisioning lock is per database.
    const byDb = new Map<string, PgModuleTarget[]>();
    for (const t of targets) {
      const key = `${t.admin.host}:${t.admin.port}/${t.admin.database}`;
      byDb.set(key, [...(byDb.get(key) ?? []), t]);
    }
    for (const group of byDb.values()) {
      const admin = postgres({ ...group[0]!.admin, max: 1 });
      try {
        const grants: ModuleGrant[] = group.map((t) => ({ module: t.module, schema: t.schema, role: t.role, database: group[0]!.admin.database! }));
        await provisionModules(admin, grants);
      } catch (err) {
        throw new Error(`could not provision the Postgres schemas and roles of ${group.map((t) => t.module).join(", ")} as ${group[0]!.admin.username} (storage.postgres.url): ${(err as Error).message}`, { cause: err });
      } finally {
        await admin.end({ timeout: 1 });
      }
    }
  }
  for (const t of targets) {
    const manifest = manifests.find((m) => m.name === t.module)!;
    const client = resolvePgClient(pg.client);
    // With Bun.sql for reads and writes, postgres.js keeps a connection for LISTEN (its own) and
    // one for the migrations that is closed when idle.
    const sql: Sql = postgres(client === "bun" ? { ...t.options, max: 1, idle_timeout: 10 } : { ...t.options, max: pg.poolSize });
    try {
      const applied = await migratePostgres(sql, { module: t.module, schema: t.schema, migrations: manifest.migrations.postgres! });
      if (applied.length > 0) deps.logger.info("migrations applied", { module: t.module, schema: t.schema, applied });
    } catch (err) {
      await sql.end({ timeout: 1 });
      if (err instanceof MigrationError) throw err;
      const where = `${t.options.host}:${t.options.port}/${t.options.database}`;
      const hint = pg.provision ? "" : " (storage.postgres.provision is false: has an operator run the SQL of `bun run main.ts provision-sql`?)";
      throw new Error(`module ${t.module}: cannot use its Postgres schema ${t.schema} as role ${t.role} at ${where}: ${(err as Error).message}${hint}`, { cause: err });
    }
    let fast: PgClient | undefined;
    if (client === "bun") {
      try {
        fast = await bunSqlClient(t.options, pg.poolSize);
        await fast.query("SELECT 1");
      } catch (err) {
        await fast?.end().catch(() => {});
        await sql.end({ timeout: 1 });
        throw new Error(`module ${t.module}: cannot connect with Bun.sql as role ${t.role} (storage.postgres.client = ${pg.client}): ${(err as Error).message}`, { cause: err });
      }
    }
    const storage = new PgModuleStorage({ module: t.module, schema: t.schema, sql, client: fast, leaseOptions: t.options, tracer: deps.tracer, maxBatch: pg.maxBatch, maxInFlight: Math.min(pg.maxInFlight, Math.max(1, pg.poolSize - 1)), onCommit: deps.onCommit(t.module) });
    opened.set(t.module, storage);
    if (!deps.walRelayed?.has(t.module)) await storage.listen();
  }
}
