import { rmSync } from "node:fs";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { uuidv7Floor } from "../ids.ts";
import { Tracer } from "../observability/trace.ts";
import { tempDataDir } from "../../test/support/platform.ts";
import { migrateSqlite, MigrationError } from "./migrate.ts";
import { SqliteModuleStorage, type SqliteTx } from "./module-storage.ts";
import { openSqlite } from "./sqlite.ts";

const migrations = [{ id: "0001_t", sql: "CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER NOT NULL)" }];

describe("SqliteModuleStorage", () => {
  let dir: string;
  let storage: SqliteModuleStorage;
  beforeEach(async () => {
    dir = tempDataDir();
    const conn = await openSqlite(join(dir, "m.db"), { synchronous: "NORMAL" });
    migrateSqlite(conn, "m", migrations);
    storage = new SqliteModuleStorage("m", conn, new Tracer());
  });
  afterEach(async () => {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const rows = () => storage.conn.prepare("SELECT id, v FROM t ORDER BY id").all<{ id: string; v: number }>();
  const outbox = () => storage.conn.prepare("SELECT aggregate_id, type FROM selaras_outbox ORDER BY seq").all<{ aggregate_id: string; type: string }>();
  const insert = (id: string, v: number) => storage.conn.prepare("INSERT INTO t (id, v) VALUES (?, ?)").run(id, v);

  it("commits business rows and outbox rows together", async () => {
    await storage.transact((tx) => {
      insert("a", 1);
      tx.publish(ErrorInfoSchema, "a", { reason: "x" });
    });
    expect(rows()).toEqual([{ id: "a", v: 1 }]);
    expect(outbox()).toEqual([{ aggregate_id: "a", type: "selaras.v1.ErrorInfo" }]);
  });

  it("rolls back both when the body throws after writing", async () => {
    await expect(
      storage.transact((tx) => {
        insert("a", 1);
        tx.publish(ErrorInfoSchema, "a", { reason: "x" });
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(rows()).toEqual([]);
    expect(outbox()).toEqual([]);
  });

  it("group-commits concurrent bodies, rolling back only the one that fails", async () => {
    const results = await Promise.allSettled([
      storage.transact((tx) => {
        insert("a", 1);
        tx.publish(ErrorInfoSchema, "a", {});
      }),
      storage.transact((tx) => {
        insert("b", 2);
        tx.publish(ErrorInfoSchema, "b", {});
        insert("a", 9); // primary key violation
      }),
      storage.transact((tx) => {
        insert("c", 3);
        tx.publish(ErrorInfoSchema, "c", {});
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(rows()).toEqual([{ id: "a", v: 1 }, { id: "c", v: 3 }]);
    expect(outbox().map((r) => r.aggregate_id)).toEqual(["a", "c"]);
  });

  it("rejects and rolls back an async body instead of committing half of it", async () => {
    let late: unknown;
    await expect(
      storage.transactInternal(async (tx) => {
        (tx as SqliteTx).db.run(sql`INSERT INTO t (id, v) VALUES ('a', 1)`);
        await Promise.resolve();
        try {
          (tx as SqliteTx).db.run(sql`INSERT INTO t (id, v) VALUES ('b', 2)`);
        } catch (err) {
          late = err;
        }
      }),
    ).rejects.toThrow(/must be synchronous/);
    await new Promise((r) => setImmediate(r));
    expect(String(late)).toMatch(/transaction already ended/);
    expect(rows()).toEqual([]);
  });

  it("wakes outbox listeners only after commits that wrote events", async () => {
    let wakes = 0;
    storage.onOutboxCommit(() => wakes++);
    await storage.transact(() => insert("a", 1));
    expect(wakes).toBe(0);
    await storage.transact((tx) => tx.publish(ErrorInfoSchema, "a", {}));
    expect(wakes).toBe(1);
  });

  it("prunes published outbox rows and inbox entries by age, keeping unpublished and young ones", async () => {
    for (let i = 0; i < 6; i++) await storage.transact((tx) => tx.publish(ErrorInfoSchema, `a${i}`, {}));
    const seqs = (await storage.readUnpublished(10)).map((r) => r.seq);
    await storage.markPublished(seqs[1]!, 1_000); // a0, a1 published long ago
    await storage.markPublished(seqs[3]!, 5_000); // a2, a3 published recently; a4, a5 unpublished
    const old = uuidv7Floor(1_000).replace(/0$/, "1");
    const young = uuidv7Floor(9_000).replace(/0$/, "1");
    await storage.transactInternal((tx) => [tx.claim("c1", old), tx.claim("c1", young), tx.claim("c2", old)]);

    expect(await storage.prune(3_000, 3_000)).toEqual({ outbox: 2, inbox: 2 });
    expect(outbox().map((r) => r.aggregate_id)).toEqual(["a2", "a3", "a4", "a5"]);
    expect(storage.conn.prepare("SELECT consumer, event_id FROM selaras_inbox").all()).toEqual([{ consumer: "c1", event_id: young }]);
    // Unpublished rows survive any cut.
    expect(await storage.prune(Number.MAX_SAFE_INTEGER, 0)).toEqual({ outbox: 2, inbox: 0 });
    expect(outbox().map((r) => r.aggregate_id)).toEqual(["a4", "a5"]);
  });

  it("claims an inbox entry once per consumer and event", async () => {
    const claims = await storage.transactInternal((tx) => [tx.claim("c1", "e1"), tx.claim("c1", "e1"), tx.claim("c2", "e1")]);
    expect(claims).toEqual([true, false, true]);
  });
});

describe("migrateSqlite", () => {
  it("applies once, and refuses an edited or unknown migration", async () => {
    const dir = tempDataDir();
    try {
      const conn = await openSqlite(join(dir, "m.db"), { synchronous: "NORMAL" });
      expect(migrateSqlite(conn, "m", migrations)).toEqual(["selaras:0001_outbox_inbox", "0001_t"]);
      expect(migrateSqlite(conn, "m", migrations)).toEqual([]);
      expect(() => migrateSqlite(conn, "m", [{ id: "0001_t", sql: "CREATE TABLE t (x)" }])).toThrow(MigrationError);
      expect(() => migrateSqlite(conn, "m", [])).toThrow(/does not know/);
      expect(() => migrateSqlite(conn, "m", [...migrations, { id: "0002_bad", sql: "CREATE TABLE nope (" }])).toThrow(/0002_bad failed/);
      // The failed migration left nothing behind and is not recorded.
      expect(conn.prepare("SELECT id FROM selaras_migrations WHERE id = '0002_bad'").get()).toBeUndefined();
      conn.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
