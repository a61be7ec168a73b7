import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { bootModules, tempDataDir, testConfig, waitFor } from "../../test/support/platform.ts";
import { openSqlite, type SqliteConnection } from "../storage/sqlite.ts";
import { seen, shelf, shelfTx, watcher, type Seen } from "./capture.fixtures.ts";

// Embedded mode has no WAL: the platform captures `shelf.items` with triggers into a change table
// of shelf's own file, and a poller publishes it (see capture-sqlite.ts). Always SQLite and the
// embedded bus, whatever the test project.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const embedded = { storage: { kind: "sqlite" as const, postgres: testConfig({ dataDir: "unused" }).storage.postgres } };

describe("change capture on SQLite (triggers into a change table)", () => {
  const dirs: string[] = [];
  const running: Array<{ dispose(): Promise<void> }> = [];
  afterEach(async () => {
    for (const t of running.splice(0)) await t.dispose();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function boot(modules = [shelf, watcher], dataDir?: string) {
    const t = await bootModules(modules, { ...embedded, ...(dataDir && { dataDir }) });
    running.push(t);
    return t;
  }
  async function stop(t: { dispose(): Promise<void> }) {
    running.splice(running.indexOf(t), 1);
    await t.dispose();
  }
  function dir() {
    const d = tempDataDir();
    dirs.push(d);
    return d;
  }
  const waitSeen = (t: Awaited<ReturnType<typeof boot>>, n: number) =>
    waitFor(async () => {
      const s = await seen(t.platform);
      return s.length >= n ? s : undefined;
    }, { what: `${n} changes seen` });
  /** The shelf's file, opened by a second connection (as another process or a tool would). */
  async function shelfFile(dataDir: string, body: (conn: SqliteConnection) => void) {
    const conn = await openSqlite(join(dataDir, "shelf.db"), { synchronous: "NORMAL" });
    try {
      body(conn);
    } finally {
      conn.close();
    }
  }

  it("captures inserts, updates and deletes once each, in commit order, with before and after", async () => {
    const t = await boot();
    await shelfTx(t.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }], ["insert", { id: "b", name: "Teh", qty: 2 }]);
    await shelfTx(t.platform, ["rename", { id: "a", name: "Kopi Susu" }]);
    await shelfTx(t.platform, ["remove", { id: "b" }]);

    const got = await waitSeen(t, 4);
    expect(got.map((s) => [s.op, s.aggregateId])).toEqual([["c", "a"], ["c", "b"], ["u", "a"], ["d", "b"]]);
    expect(got[0]).toMatchObject({ before: null, after: { id: "a", name: "Kopi", qty: 1, photo: null }, sourceModule: "shelf" });
    expect(got[2]).toMatchObject({ before: { id: "a", name: "Kopi" }, after: { id: "a", name: "Kopi Susu", qty: 1 } });
    expect(got[3]).toMatchObject({ before: { id: "b", name: "Teh", qty: 2 }, after: null });
    expect(got[0]!.source).toMatchObject({ connector: "sqlite", db: "shelf.db", schema: "main", table: "items", module: "shelf", txId: 0, snapshot: false });
    // Positions grow with every change; the event occurred when the row was written.
    const lsns = got.map((s) => s.source.lsn);
    expect(lsns).toEqual([...lsns].sort((x, y) => x - y));
    expect(new Set(lsns).size).toBe(4);
    expect(got.every((s) => UUID.test(s.eventId) && s.occurredAt === s.source.tsMs)).toBe(true);

    await t.platform.settle();
    expect(await seen(t.platform)).toHaveLength(4);
    const [left] = await t.platform.storage("shelf").queryRaw<{ n: number }>("SELECT count(*) AS n FROM selaras_cdc_changes");
    expect(left!.n).toBe(0); // published changes are deleted
    const metrics = await t.platform.metrics.text();
    expect(metrics).toMatch(/selaras_cdc_events_published_total\{module="shelf"\} 4/);
    expect(metrics).toMatch(/selaras_cdc_pending_changes\{module="shelf"\} 0/);
  });

  it("keeps a change that commits while nothing publishes, and publishes it at the next start", async () => {
    const dataDir = dir();
    const first = await boot(undefined, dataDir);
    await shelfTx(first.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(first, 1);
    await stop(first);

    // The process is gone; another connection writes the file. The trigger lives in the file, so
    // the change is captured in the writer's transaction — nothing can commit uncaptured.
    await shelfFile(dataDir, (conn) => {
      conn.prepare("UPDATE items SET qty = 5 WHERE id = 'a'").run();
      expect(conn.prepare("SELECT op, pk FROM selaras_cdc_changes").all()).toEqual([{ op: "u", pk: "a" }]);
    });

    const second = await boot(undefined, dataDir);
    const got = await waitSeen(second, 2);
    expect(got.map((s) => [s.op, s.before?.qty, s.after?.qty])).toEqual([["c", undefined, 1], ["u", 1, 5]]);
    await second.platform.settle();
    expect(await seen(second.platform)).toHaveLength(2);
  });

  it("publishes a change again under the same id after a crash between publishing and deleting: consumed once", async () => {
    const dataDir = dir();
    const first = await boot(undefined, dataDir);
    await stop(first);
    let row: Record<string, unknown> | undefined;
    await shelfFile(dataDir, (conn) => {
      conn.prepare("INSERT INTO items (id, name, qty) VALUES ('a', 'Kopi', 1)").run();
      row = conn.prepare("SELECT * FROM selaras_cdc_changes").get();
    });
    const second = await boot(undefined, dataDir);
    const [once] = await waitSeen(second, 1);
    await second.platform.settle();
    await stop(second);

    // The crash window: the change was published but its row not deleted — put it back.
    await shelfFile(dataDir, (conn) => {
      expect(conn.prepare("SELECT count(*) AS n FROM selaras_cdc_changes").get()).toEqual({ n: 0 });
      conn.prepare("INSERT INTO selaras_cdc_changes (seq, tbl, op, pk, before, after, at) VALUES (?, ?, ?, ?, ?, ?, ?)").run(row!.seq, row!.tbl, row!.op, row!.pk, row!.before, row!.after, row!.at);
    });
    const third = await boot(undefined, dataDir);
    await waitFor(async () => (await third.platform.storage("shelf").queryRaw<{ n: number }>("SELECT count(*) AS n FROM selaras_cdc_changes"))[0]!.n === 0, { what: "the change republished" });
    await third.platform.settle();
    const all = await seen(third.platform);
    expect(all.map((s) => s.eventId)).toEqual([once!.eventId]);
  });

  it("snapshots the rows a table held before it was captured, once, as op r", async () => {
    const dataDir = dir();
    const alone = await boot([shelf], dataDir);
    await shelfTx(alone.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }], ["insert", { id: "b", name: "Teh", qty: 2 }]);
    await stop(alone);
    await shelfFile(dataDir, (conn) => {
      expect(conn.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'selaras_cdc_changes'").get()).toEqual({ n: 0 });
    });

    const withWatcher = await boot(undefined, dataDir);
    await shelfTx(withWatcher.platform, ["insert", { id: "c", name: "Susu", qty: 3 }]);
    const got = await waitSeen(withWatcher, 3);
    expect(got.map((s) => [s.op, s.aggregateId, s.source.snapshot])).toEqual([["r", "a", true], ["r", "b", true], ["c", "c", false]]);
    expect(got[0]).toMatchObject({ before: null, after: { id: "a", name: "Kopi", qty: 1 } });
    await stop(withWatcher);

    const again = await boot(undefined, dataDir);
    await shelfTx(again.platform, ["remove", { id: "a" }]);
    const after = await waitSeen(again, 4);
    await again.platform.settle();
    expect(after.map((s) => s.op)).toEqual(["r", "r", "c", "d"]);
    expect(await seen(again.platform)).toHaveLength(4);
  });

  it("regenerates the triggers when the table gained a column, and captures the column", async () => {
    const dataDir = dir();
    const first = await boot(undefined, dataDir);
    await shelfTx(first.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(first, 1);
    await stop(first);
    await shelfFile(dataDir, (conn) => conn.exec("ALTER TABLE items ADD COLUMN note TEXT DEFAULT 'hot'"));

    const second = await boot(undefined, dataDir);
    await shelfTx(second.platform, ["rename", { id: "a", name: "Kopi Susu" }]);
    const got = await waitSeen(second, 2);
    expect(got[1]).toMatchObject({ op: "u", before: { name: "Kopi", note: "hot" }, after: { name: "Kopi Susu", note: "hot" } });
    const triggers = await second.platform.storage("shelf").queryRaw<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'items' ORDER BY name");
    expect(triggers.map((r) => r.name.replace(/_[0-9a-f]{10}_/, "_<hash>_"))).toEqual(["selaras_cdc_items_<hash>_c", "selaras_cdc_items_<hash>_d", "selaras_cdc_items_<hash>_u"]);
  });

  it("removes its triggers once nothing captures the table, and snapshots it again when captured again", async () => {
    const dataDir = dir();
    const first = await boot(undefined, dataDir);
    await shelfTx(first.platform, ["insert", { id: "a", name: "Kopi", qty: 1 }]);
    await waitSeen(first, 1);
    await stop(first);

    const alone = await boot([shelf], dataDir);
    await shelfTx(alone.platform, ["insert", { id: "b", name: "Teh", qty: 2 }]);
    const storage = alone.platform.storage("shelf");
    expect(await storage.queryRaw("SELECT name FROM sqlite_master WHERE type = 'trigger'")).toEqual([]);
    expect(await storage.queryRaw("SELECT seq FROM selaras_cdc_changes")).toEqual([]); // nobody would publish them
    await stop(alone);

    const again = await boot(undefined, dataDir);
    const got = await waitSeen(again, 3);
    expect(got.map((s) => [s.op, s.aggregateId])).toEqual([["c", "a"], ["r", "a"], ["r", "b"]]);
  });

  it("refuses to start when a declared table does not exist, naming it", async () => {
    const typo = { ...watcher, name: "typo", captures: [{ module: "shelf", table: "itemz" }] };
    await expect(boot([shelf, typo])).rejects.toThrow(/module shelf: cannot capture table itemz: it does not exist/);
  });

  it("never fails the module's write: a BLOB value is captured as hex", async () => {
    const t = await boot();
    await shelfTx(t.platform, ["insert", { id: "a", name: "Foto", qty: 1, photo: Buffer.from([0xca, 0xfe]) }]);
    const [got] = await waitSeen(t, 1);
    expect((got as Seen).after).toMatchObject({ id: "a", photo: "CAFE" });
  });
});
