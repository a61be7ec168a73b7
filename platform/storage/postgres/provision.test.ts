import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropPg, pgConnect, randomPgPrefix } from "../../../test/support/postgres.ts";
import { migratePostgres } from "./migrate.ts";
import { moduleSchemaName, provisionModules, provisionSql, type ModuleGrant } from "./provision.ts";

// Integration: the shared Postgres. Creates schemas and roles `t_<random>_<module>`, drops them.
describe("Postgres provisioning: a schema and a role per module", () => {
  const prefix = randomPgPrefix();
  let admin: Sql;
  const clients: Sql[] = [];
  const grant = (module: string): ModuleGrant => {
    const name = moduleSchemaName(prefix, module);
    return { module, schema: name, role: name, database: "test" };
  };
  const orders = grant("orders");
  const history = grant("order-history");

  beforeAll(() => {
    admin = pgConnect();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 0 })));
    await dropPg(admin, [orders.schema, history.schema], [orders.role, history.role]);
    await admin.end();
  });
  const as = (role: string) => {
    const c = pgConnect(role);
    clients.push(c);
    return c;
  };

  const snapshot = () => admin`
    SELECT n.nspname, n.nspacl::text AS acl, r.rolname, r.rolcanlogin, r.rolsuper,
           (SELECT array_agg(c) FROM pg_db_role_setting s, unnest(s.setconfig) AS c WHERE s.setrole = r.oid) AS settings
    FROM pg_namespace n JOIN pg_roles r ON r.rolname = n.nspname
    WHERE n.nspname IN (${orders.schema}, ${history.schema}) ORDER BY 1`;

  it("names schemas <prefix>_<module> and documents the SQL", () => {
    expect(history.schema).toBe(`${prefix}_order_history`);
    const text = provisionSql(orders);
    expect(text).toContain(`GRANT USAGE, CREATE ON SCHEMA "${orders.schema}" TO "${orders.role}"`);
    expect(() => moduleSchemaName(prefix, "Bad;Name")).toThrow(/invalid schema name/);
  });

  it("is idempotent: provisioning twice changes nothing", async () => {
    await provisionModules(admin, [orders, history]);
    const first = await snapshot();
    expect(first.map((r) => r.nspname)).toEqual([history.schema, orders.schema].sort());
    expect(first.every((r) => r.rolcanlogin && !r.rolsuper)).toBe(true);
    expect(first[0]!.settings).toEqual([`search_path=${first[0]!.nspname}`]);
    await provisionModules(admin, [orders, history]);
    expect(await snapshot()).toEqual(first);
  });

  it("lets a module use its own schema and Postgres refuses another module's (42501)", async () => {
    const o = as(orders.role);
    const h = as(history.role);
    await migratePostgres(o, { module: "orders", schema: orders.schema, migrations: [{ id: "0001_init", sql: "CREATE TABLE orders (id text PRIMARY KEY)" }] });
    await o`INSERT INTO orders (id) VALUES ('o1')`; // unqualified: the role's search_path
    expect(await o`SELECT id FROM orders`).toEqual([{ id: "o1" }]);

    const denied = (p: Promise<unknown>) => p.then(() => "allowed", (e: { code?: string; message: string }) => `${e.code}: ${e.message}`);
    expect(await denied(h.unsafe(`SELECT * FROM "${orders.schema}".orders`))).toMatch(/^42501: permission denied for schema/);
    expect(await denied(h.unsafe(`INSERT INTO "${orders.schema}".orders VALUES ('x')`))).toMatch(/^42501/);
    expect(await denied(h.unsafe(`CREATE TABLE "${orders.schema}".sneaky (x int)`))).toMatch(/^42501/);
    expect(await denied(h.unsafe(`CREATE TABLE public.${prefix}_sneaky (x int)`))).toMatch(/^42501/);
  });

  it("a concurrent first provisioning does not fail either", async () => {
    const fresh = grant("customers");
    const other = pgConnect();
    try {
      const results = await Promise.allSettled([provisionModules(admin, [fresh]), provisionModules(other, [fresh])]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled"]);
    } finally {
      await other.end();
      await dropPg(admin, [fresh.schema], [fresh.role]);
    }
  });
});
