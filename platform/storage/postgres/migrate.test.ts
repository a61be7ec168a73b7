import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropPg, pgConnect, randomPgPrefix } from "../../../test/support/postgres.ts";
import type { Migration } from "../../module.ts";
import { MigrationError } from "../migrate.ts";
import { migratePostgres, platformPostgresMigrations } from "./migrate.ts";
import { moduleSchemaName, provisionModules } from "./provision.ts";

// Integration: the shared Postgres. Creates one schema and role `t_<random>_<module>` per test, drops them.
describe("Postgres migrations, per module", () => {
  let admin: Sql;
  const created: Array<{ schema: string; role: string }> = [];
  const clients: Sql[] = [];
  beforeAll(() => {
    admin = pgConnect();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 0 })));
    await dropPg(admin, created.map((c) => c.schema), created.map((c) => c.role));
    await admin.end();
  });

  /** A provisioned module and a client connected as its role. */
  async function module(name = "orders") {
    const schema = moduleSchemaName(randomPgPrefix(), name);
    created.push({ schema, role: schema });
    await provisionModules(admin, [{ module: name, schema, role: schema, database: "test" }]);
    const connect = () => {
      const c = pgConnect(schema);
      clients.push(c);
      return c;
    };
    return { schema, connect, sql: connect() };
  }

  // Not idempotent on purpose: running it twice would fail.
  const v1: Migration[] = [
    { id: "0001_init", sql: "CREATE TABLE orders (id text PRIMARY KEY);" },
    { id: "0002_total", sql: "ALTER TABLE orders ADD COLUMN total_cents bigint NOT NULL DEFAULT 0;" },
  ];

  it("applies the platform's tables and the module's migrations once, in the module's schema", async () => {
    const { schema, sql } = await module();
    expect(await migratePostgres(sql, { module: "orders", schema, migrations: v1 })).toEqual([...platformPostgresMigrations.map((m) => m.id), "0001_init", "0002_total"]);
    expect(await migratePostgres(sql, { module: "orders", schema, migrations: v1 })).toEqual([]);
    const tables = await admin<{ tablename: string; tableowner: string }[]>`SELECT tablename, tableowner FROM pg_tables WHERE schemaname = ${schema} ORDER BY 1`;
    expect(tables.map((t) => t.tablename)).toEqual(["orders", "selaras_inbox", "selaras_migrations", "selaras_outbox"]);
    expect(new Set(tables.map((t) => t.tableowner))).toEqual(new Set([schema]));
  });

  it("two migrators started at once apply each migration exactly once", async () => {
    const { schema, connect } = await module();
    const [a, b] = await Promise.all([
      migratePostgres(connect(), { module: "orders", schema, migrations: v1 }),
      migratePostgres(connect(), { module: "orders", schema, migrations: v1 }),
    ]);
    expect([...a, ...b].sort()).toEqual([...platformPostgresMigrations.map((m) => m.id), ...v1.map((m) => m.id)].sort());
    const rows = await admin.unsafe(`SELECT count(*)::int AS n FROM "${schema}".selaras_migrations`);
    expect(rows[0]!.n).toBe(platformPostgresMigrations.length + v1.length);
  });

  it("refuses an edited or an unknown applied migration, and rolls back a failing one", async () => {
    const { schema, sql } = await module();
    await migratePostgres(sql, { module: "orders", schema, migrations: v1 });
    const edited = [v1[0]!, { ...v1[1]!, sql: v1[1]!.sql.replace("0", "1") }];
    await expect(migratePostgres(sql, { module: "orders", schema, migrations: edited })).rejects.toThrow(/migration 0002_total was edited/);
    await expect(migratePostgres(sql, { module: "orders", schema, migrations: [v1[0]!] })).rejects.toThrow(/has migration 0002_total, which this binary does not know/);
    const broken = [...v1, { id: "0003_broken", sql: "CREATE TABLE half (x int); SELECT no_such_column FROM orders;" }];
    const err = await migratePostgres(sql, { module: "orders", schema, migrations: broken }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as Error).message).toMatch(/migration 0003_broken failed/);
    const [half] = await admin`SELECT to_regclass(${`"${schema}".half`}) AS t`;
    expect(half!.t).toBeNull();
  });
});
