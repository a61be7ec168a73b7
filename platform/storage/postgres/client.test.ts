import { afterAll, describe, expect, it } from "vitest";
import { pgConnect, pgOptions } from "../../../test/support/postgres.ts";
import { bunSqlClient, int8AsNumber, postgresJsClient, resolvePgClient, type PgClient } from "./client.ts";

// Integration: the shared Postgres. Both clients of a module's pool must look the same to the
// storage: int8 as numbers, the SQLSTATE in `code`, the affected-row count of each statement.

const onBun = typeof Bun !== "undefined";

describe("resolvePgClient", () => {
  it('"auto" is Bun.sql under Bun and postgres.js on Node; "bun" on Node is refused, naming the key', () => {
    expect(resolvePgClient("auto")).toBe(onBun ? "bun" : "postgres.js");
    expect(resolvePgClient("postgres.js")).toBe("postgres.js");
    if (onBun) expect(resolvePgClient("bun")).toBe("bun");
    else expect(() => resolvePgClient("bun")).toThrow(/storage\.postgres\.client: "bun" needs the Bun runtime/);
  });
});

const clients: Array<[string, () => Promise<PgClient>]> = [["postgres.js", async () => postgresJsClient(pgConnect(undefined, { max: 2, types: int8AsNumber }))]];
if (onBun) clients.push(["Bun.sql", () => bunSqlClient(pgOptions(), 2)]);

describe.each(clients)("PgClient over %s", (_name, open) => {
  const opened: PgClient[] = [];
  const client = async () => {
    const c = await open();
    opened.push(c);
    return c;
  };
  afterAll(async () => {
    for (const c of opened) await c.end();
  });

  it("returns int8 as numbers, and text that looks like a number as text", async () => {
    const c = await client();
    expect(await c.query("SELECT $1::int8 AS n, count(*) AS c, '42' AS s, NULL::int8 AS z", [2 ** 40])).toEqual([{ n: 2 ** 40, c: 1, s: "42", z: null }]);
  });

  it("rejects with the SQLSTATE in code", async () => {
    const c = await client();
    await expect(c.query("SELECT 1 / $1::int AS x", [0])).rejects.toMatchObject({ code: "22012" });
  });

  it("a reserved connection answers each statement with its affected rows, in send order, in one transaction", async () => {
    const c = await client();
    const t = await c.reserve();
    try {
      const answers = Promise.all([
        t.send("BEGIN"),
        t.send("CREATE TEMP TABLE pgclient_t (id int PRIMARY KEY) ON COMMIT DROP"),
        t.send("INSERT INTO pgclient_t VALUES ($1), ($2)", [1, 2]),
        t.send("DELETE FROM pgclient_t WHERE id > $1", [5]),
        t.send("UPDATE pgclient_t SET id = id + 10"),
        t.send("COMMIT"),
      ]);
      expect((await answers).slice(2, 5)).toEqual([2, 0, 2]);
      await expect(t.send("INSERT INTO pgclient_missing VALUES (1)")).rejects.toMatchObject({ code: "42P01" });
    } finally {
      t.release();
    }
  });
});
