import { mkdirSync } from "node:fs";
import type { PlatformConfig } from "../config/schema.ts";
import type { ModuleManifest } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import { Tracer } from "../observability/trace.ts";
import { openModuleStorage, pgTargets } from "../storage/open.ts";
import { hardenDatabaseSql, provisionSql } from "../storage/postgres/provision.ts";
import type { Io } from "./dead-letters.ts";

export const STORAGE_USAGE = `Usage:
  bun run main.ts migrate          provision (storage.postgres.provision) and migrate the storage of this
                                   process's modules (every module without a topology), then exit
  bun run main.ts provision-sql    print the SQL an operator runs as a superuser to create each module's
                                   schema and role by hand (then set storage.postgres.provision=false)`;

/**
 * `provision-sql`: the idempotent SQL that creates the schema and role of each module of this
 * process (storage.postgres), plus the optional database hardening, for an operator to review and
 * run. Prints nothing secret: set passwords with ALTER ROLE … PASSWORD yourself.
 */
export function provisionSqlCommand(config: PlatformConfig, modules: readonly ModuleManifest<any>[], io: Io): number {
  const targets = pgTargets(config, modules.map((m) => m.name));
  const databases = new Set<string>();
  io.out(`-- Selaras: one schema and one LOGIN role per module (storage.postgres.schemaPrefix = ${config.storage.postgres.schemaPrefix}).`);
  io.out("-- Run as a superuser (or a role with CREATEROLE that owns the database). Every statement is idempotent.");
  for (const t of targets) {
    const database = t.admin.database!;
    databases.add(database);
    io.out(`\n-- in database ${database}:`);
    io.out(provisionSql({ module: t.module, schema: t.schema, role: t.role, database }).trimEnd());
  }
  io.out("\n-- Optional, once per database: nobody connects or uses the public schema unless granted.");
  for (const d of databases) io.out(`-- ${hardenDatabaseSql(d).trimEnd().replaceAll("\n", "\n-- ")}`);
  return 0;
}

/** `migrate`: opens (provisioning when allowed) and migrates every module's storage, then closes it. */
export async function migrateCommand(config: PlatformConfig, modules: readonly ModuleManifest<any>[], logger: Logger, io: Io): Promise<number> {
  if (config.storage.kind === "sqlite") mkdirSync(config.dataDir, { recursive: true });
  const storages = await openModuleStorage(config, modules, { tracer: new Tracer(), logger, onCommit: () => () => {} });
  for (const s of storages.values()) await s.close();
  io.out(`migrated: ${[...storages.keys()].join(", ")} (${config.storage.kind})`);
  return 0;
}
