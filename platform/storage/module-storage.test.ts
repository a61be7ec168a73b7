import { rmSync } from "node:fs";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PlatformConfigSchema } from "../config/schema.ts";
import { Tracer } from "../observability/trace.ts";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { checksum, migrateSqlite, MigrationError, platformSqliteMigrations } from "./migrate.ts";
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

    it("is found again by a reopened storage among many rows, and each mark writes only its own range", async () => {
      const names = Array.from({ length: 37 }, (_, i) => `r${String(i).padStart(2, "0")}`);
      await publish(...names);
      const rows = await storage.readUnpublished(100);
      await storage.markPublished(rows[9]!.seq, 10);
      await storage.markPublished(rows[20]!.seq, 20);
      await storage.close();
      const conn = await openSqlite(join(dir, "m.db"), { synchronous: "NORMAL" });
      // Rows 0–9 carry the first mark's time, 10–20 the second's: neither UPDATE touched the other's rows.
      expect(conn.prepare("SELECT published_at AS at, COUNT(*) AS n FROM selaras_outbox GROUP BY published_at ORDER BY published_at").all()).toEqual([
        { at: null, n: 16 },
        { at: 10, n: 10 },
        { at: 20, n: 11 },
      ]);
      const reopened = new SqliteModuleStorage("m", conn, new Tracer());
      expect(ids(await reopened.readUnpublished(100))).toEqual(names.slice(21));
      expect((await reopened.outboxStats()).backlog).toBe(16);
      await reopened.close();
    });
  });

  it("prunes published outbox rows but keeps the newest, so a seq is never handed out again", async () => {
    const publish = (...ids: string[]) => storage.transactInternal((tx) => ids.forEach((id) => tx.publish(ErrorInfoSchema, id, { reason: id })));
    await publish("a", "b", "c");
    const [, , c] = await storage.readUnpublished(10);
    await storage.markPublished(c!.seq, 10);
    await storage.transactInternal(() => undefined); // writes the mark
    expect((await storage.prune(Date.now() + 1, 0)).outbox).toBe(2);
    expect(storage.conn.prepare("SELECT seq FROM selaras_outbox").all()).toEqual([{ seq: c!.seq }]);
    // With every row pruned, SQLite would give the next row seq 1, below the relay's position.
    await publish("d");
    const [d] = await storage.readUnpublished(10);
    expect(d).toMatchObject({ aggregate_id: "d", seq: c!.seq + 1 });
  });
});

describe("migrateSqlite", () => {
  it("moves an outbox of the first schema to the second with its rows and seqs, and the relay goes on from them", async () => {
    const dir = tempDataDir();
    try {
      const conn = await openSqlite(join(dir, "m.db"), { synchronous: "NORMAL" });
      // A file as the previous version left it: migration 0001 only, rows published and not.
      const [first] = platformSqliteMigrations;
      conn.exec("CREATE TABLE selaras_migrations (id TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)");
      conn.exec(first!.sql);
      conn.prepare("INSERT INTO selaras_migrations (id, checksum, applied_at) VALUES (?, ?, 0)").run(first!.id, checksum(first!.sql));
      const insert = conn.prepare("INSERT INTO selaras_outbox (event_id, aggregate_id, type, payload, headers, created_at, published_at) VALUES (?, ?, 't', x'01', '{}', 1, ?)");
      for (let i = 1; i <= 6; i++) insert.run(`e${i}`, `a${i}`, i <= 4 ? 5 : null);
      conn.exec("DELETE FROM selaras_outbox WHERE seq <= 2"); // pruned by the previous version
      expect(migrateSqlite(conn, "m", migrations)).toEqual(["selaras:0002_outbox_seq", "0001_t"]);
      expect(conn.prepare("SELECT seq, event_id, published_at FROM selaras_outbox ORDER BY seq").all()).toEqual([
        { seq: 3, event_id: "e3", published_at: 5 },
        { seq: 4, event_id: "e4", published_at: 5 },
        { seq: 5, event_id: "e5", published_at: null },
        { seq: 6, event_id: "e6", published_at: null },
      ]);
      // No AUTOINCREMENT and no index of unpublished rows any more.
      expect(conn.prepare("SELECT type, name FROM sqlite_master WHERE tbl_name = 'selaras_outbox'").all()).toEqual([{ type: "table", name: "selaras_outbox" }]);
      expect(conn.prepare("SELECT sql FROM sqlite_master WHERE name = 'selaras_outbox'").get<{ sql: string }>()!.sql).not.toMatch(/AUTOINCREMENT/i);
      expect(conn.prepare("SELECT name FROM sqlite_sequence").all()).toEqual([]);
      const storage = new SqliteModuleStorage("m", conn, new Tracer());
      expect((await storage.readUnpublished(10)).map((r) => r.event_id)).toEqual(["e5", "e6"]);
      await storage.transactInternal((tx) => void tx.publish(ErrorInfoSchema, "a7", { reason: "x" }));
      expect((await storage.readUnpublished(10)).map((r) => r.seq)).toEqual([5, 6, 7]);
      await storage.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("applies once, and refuses an edited or unknown migration", async () => {
    const dir = tempDataDir();
    try {
      const conn = await openSqlite(join(dir, "m.db"), { synchronous: "NORMAL" });
      expect(migrateSqlite(conn, "m", migrations)).toEqual(["selaras:0001_outbox_inbox", "selaras:0002_outbox_seq", "0001_t"]);
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
