import { createServer } from "node:net";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../test/support/platform.ts";
import { pgConnect, pgOptions } from "../../test/support/postgres.ts";
import { bunSqlClient } from "../storage/postgres/client.ts";
import { isUnreachable } from "./consumer.ts";

describe("isUnreachable", () => {
  it("tells an unreachable database from a failing handler, through cause chains", () => {
    const withCode = (code: string) => Object.assign(new Error(code), { code });
    for (const code of ["ECONNREFUSED", "ECONNRESET", "CONNECTION_CLOSED", "CONNECTION_ENDED", "08006", "08001", "53300", "57P01", "SQLITE_BUSY", "ERR_POSTGRES_CONNECTION_CLOSED"]) {
      expect(isUnreachable(withCode(code)), code).toBe(true);
    }
    expect(isUnreachable(new Error("Failed query", { cause: withCode("53300") }))).toBe(true);
    // Bun.sql: the SQLSTATE in errno, a generic code.
    expect(isUnreachable(Object.assign(new Error("terminating"), { code: "ERR_POSTGRES_SERVER_ERROR", errno: "57P01" }))).toBe(true);
    for (const code of ["23505", "42501", "22P02", "SQLITE_CONSTRAINT_UNIQUE"]) expect(isUnreachable(withCode(code)), code).toBe(false);
    expect(isUnreachable(Object.assign(new Error("duplicate"), { code: "ERR_POSTGRES_SERVER_ERROR", errno: "23505" }))).toBe(false);
    expect(isUnreachable(new Error("handler bug"))).toBe(false);
  });

  // The errors Bun.sql really throws (the production client under Bun), against the shared Postgres.
  it.runIf(typeof Bun !== "undefined")("recognises Bun.sql's own errors: nothing listening, and a read on a terminated session", async () => {
    const free = createServer();
    const port = await new Promise<number>((r) => free.listen(0, "127.0.0.1", () => r((free.address() as { port: number }).port)));
    await new Promise((r) => free.close(r));
    const nowhere = await bunSqlClient({ ...pgOptions(), port }, 1);
    const refused = await nowhere.query("SELECT 1").catch((e: unknown) => e);
    await nowhere.end();
    expect(refused).toBeInstanceOf(Error);
    expect(isUnreachable(refused)).toBe(true);

    const client = await bunSqlClient(pgOptions(), 1);
    const admin = pgConnect();
    try {
      const [session] = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      // Terminated while a read runs on it (a session ended between reads is replaced silently).
      const running = client.db.execute(sql`SELECT pg_sleep(30)`).catch((e: unknown) => e); // drizzle wraps it
      await waitFor(async () => (await admin`SELECT 1 FROM pg_stat_activity WHERE pid = ${session!.pid} AND state = 'active'`).length > 0, { what: "the read to run" });
      await admin`SELECT pg_terminate_backend(${session!.pid})`;
      const terminated = await running;
      expect(terminated).toBeInstanceOf(Error);
      expect(isUnreachable(terminated)).toBe(true);
      const failing = await client.db.execute(sql`SELECT 1 / 0`).catch((e: unknown) => e);
      expect(isUnreachable(failing)).toBe(false);
    } finally {
      await client.end();
      await admin.end();
    }
  });
});
