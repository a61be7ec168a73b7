import { rmSync } from "node:fs";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PlatformConfigSchema } from "../config/schema.ts";
import { Tracer } from "../observability/trace.ts";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { migrateSqlite, MigrationError } from "./migrate.ts";
import { SqliteModuleStorage, type PlatformStorage, type SqliteTx } from "./module-storage.ts";
import { openModuleStorage } from "./open.ts";
import { openSqlite } from "./sqlite.ts";
import { storageConformance, storageTestModule } from "./storage.conformance.ts";

// The test module's file in a temp data dir, opened the way the platform opens it.
storageConformance("SQLite", async () => {
  const dataDir = tempDataDir();
  const opened: PlatformStorage[] = [];
  return {
    async open(deps) {
      const storage = (await openModuleStorage(PlatformConfigSchema.parse({ dataDir }), [storageTestModule()], deps)).get("conf")!;
      opened.push(storage);
      return storage;
    },
    async dispose() {
      for (const s of opened) await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
});

// What only SQLite has: the drizzle handle of a transaction, and claims answered inside the body.
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

  it("opens its file in WAL mode, foreign keys on, statement journals in memory (group commits' savepoints write no temp file)", () => {
    const pragma = (name: string) => Object.values(storage.conn.prepare(`PRAGMA ${name}`).get<Record<string, unknown>>()!)[0];
    expect([pragma("journal_mode"), pragma("foreign_keys"), pragma("temp_store")]).toEqual(["wal", 1, 2]);
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

  it("claims an inbox entry once per consumer and event", async () => {
    const claims = await storage.transactInternal((tx) => [tx.claim("c1", "e1"), tx.claim("c1", "e1"), tx.claim("c2", "e1")]);
    expect(claims).toEqual([true, false, true]);
  });

  describe("the relay's mark", () => {
    const publish = (...ids: string[]) => storage.transactInternal((tx) => ids.forEach((id) => tx.publish(ErrorInfoSchema, id, { reason: id })));
    const ids = (rs: Array<{ aggregate_id: string }>) => rs.map((r) => r.aggregate_id);
    /** What the file says is unpublished, whatever this process holds in memory. */
    const unmarkedInFile = (conn = storage.conn) => ids(conn.prepare("SELECT aggregate_id FROM selaras_outbox WHERE published_at IS NULL ORDER BY seq").all<{ aggregate_id: string }>());

    it("holds at once for the relay's reads and the backlog, and is written by the next commit, not one of its own", async () => {
      await publish("a", "b", "c");
      const [, b] = await storage.readUnpublished(2);
      const commits: number[] = [];
      const unlisten = storage.afterCommit(() => commits.push(1));
      expect(ids(await storage.markPublished(b!.seq, 10, 10))).toEqual(["c"]);
      expect(ids(await storage.readUnpublished(10))).toEqual(["c"]);
      expect((await storage.outboxStats()).backlog).toBe(1);
      expect(unmarkedInFile()).toEqual(["a", "b", "c"]);
      await storage.transactInternal((tx) => (tx as SqliteTx).db.run(sql`INSERT INTO t (id, v) VALUES ('x', 1)`));
      expect(commits).toHaveLength(1);
      expect(unmarkedInFile()).toEqual(["c"]);
      unlisten();
    });

    it("is written in a commit of its own when no other commit comes", async () => {
      await publish("a", "b");
      const [, b] = await storage.readUnpublished(10);
      await storage.markPublished(b!.seq, 10);
      await waitFor(() => unmarkedInFile().length === 0, { what: "the mark written without another commit" });
      expect((await storage.outboxStats()).backlog).toBe(0);
    });

    it("is written at close, so the next process does not publish those rows again", async () => {
      await publish("a", "b");
      const [a] = await storage.readUnpublished(1);
      await storage.markPublished(a!.seq, 10);
      await storage.close();
      const conn = await openSqlite(join(dir, "m.db"), { synchronous: "NORMAL" });
      const reopened = new SqliteModuleStorage("m", conn, new Tracer());
      expect(unmarkedInFile(conn)).toEqual(["b"]);
      expect(ids(await reopened.readUnpublished(10))).toEqual(["b"]);
      await reopened.close();
    });
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
