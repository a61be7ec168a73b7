import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDataDir, waitFor } from "../../test/support/platform.ts";
import { createLogger } from "../observability/logger.ts";
import { BACKSTOP_FACTOR, checkpointThread } from "./background-checkpoints.ts";
import { openSqlite, type SqliteConnection, type SqliteOptions } from "./sqlite.ts";

// A small threshold, so a few commits cross it while staying far below the backstop
// (PAGES * BACKSTOP_FACTOR): only the checkpoint thread can have copied them into the file.
const PAGES = 16;
const COMMITS = 30; // one ~3 KB row a page: about two WAL frames per commit

describe("background WAL checkpoints", () => {
  let dir: string;
  const open: SqliteConnection[] = [];
  beforeEach(() => {
    dir = tempDataDir();
  });
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function openFile(name: string, opts: Partial<SqliteOptions> = {}, logLines?: string[]) {
    const logger = logLines && createLogger({ level: "error", sink: (line) => logLines.push(line) });
    const conn = await openSqlite(join(dir, name), { synchronous: "NORMAL", walAutocheckpointPages: PAGES, ...opts }, logger);
    open.push(conn);
    return conn;
  }
  const closeFile = (conn: SqliteConnection) => {
    open.splice(open.indexOf(conn), 1);
    conn.close();
  };
  const autocheckpoint = (conn: SqliteConnection) => conn.prepare("PRAGMA wal_autocheckpoint").get<{ wal_autocheckpoint: number }>()!.wal_autocheckpoint;
  const fileSize = (conn: SqliteConnection) => statSync(conn.file).size;
  function writeRows(conn: SqliteConnection, from = 0) {
    conn.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
    const insert = conn.prepare("INSERT INTO t (id, body) VALUES (?, randomblob(3000))");
    for (let i = from; i < from + COMMITS; i++) insert.run(i);
  }

  it("has the thread copy the WAL into the database once it passes the threshold, while the commits' own autocheckpoint waits at the backstop", async () => {
    const conn = await openFile("a.db");
    expect(autocheckpoint(conn)).toBe(PAGES * BACKSTOP_FACTOR);
    expect(checkpointThread()?.files).toBe(1);
    expect(fileSize(conn)).toBeLessThan(PAGES * 3000);
    writeRows(conn);
    // In WAL mode the database file only grows when a checkpoint copies pages into it.
    await waitFor(() => fileSize(conn) > PAGES * 3000 && fileSize(conn), { what: "the database file to grow" });
  });

  it("keeps every committed row across close and reopen, and the closing connection still removes the WAL", async () => {
    const conn = await openFile("a.db");
    writeRows(conn);
    await waitFor(() => fileSize(conn) > PAGES * 3000, { what: "the thread's first checkpoint" });
    writeRows(conn, COMMITS);
    closeFile(conn);
    // Only the last connection to close deletes the WAL: the thread closed its own first.
    expect(existsSync(`${conn.file}-wal`)).toBe(false);
    const again = await openFile("a.db");
    expect(again.prepare("SELECT count(*) AS n, sum(length(body)) AS bytes FROM t").get()).toEqual({ n: 2 * COMMITS, bytes: 2 * COMMITS * 3000 });
  });

  it("runs one thread for every file of the process, ended by the last close", async () => {
    const a = await openFile("a.db");
    const b = await openFile("b.db");
    const thread = checkpointThread()!;
    expect(thread.files).toBe(2);
    writeRows(a);
    writeRows(b);
    closeFile(a);
    expect(checkpointThread()).toBe(thread);
    expect(thread.files).toBe(1);
    closeFile(b);
    expect(checkpointThread()).toBeUndefined();
    await thread.exited;
    // The next file starts a new one.
    await openFile("c.db");
    expect(checkpointThread()).not.toBe(thread);
  });

  it("hands the checkpoints back to the commits when the thread dies, and says so once", async () => {
    const logs: string[] = [];
    const a = await openFile("a.db", {}, logs);
    const b = await openFile("b.db", {}, logs);
    writeRows(b);
    await waitFor(() => fileSize(b) > PAGES * 3000, { what: "the thread's first checkpoint" });
    await checkpointThread()!.kill();
    await waitFor(() => autocheckpoint(a) === PAGES && autocheckpoint(b) === PAGES, { what: "the configured wal_autocheckpoint back" });
    expect(logs).toHaveLength(1);
    expect(JSON.parse(logs[0]!)).toMatchObject({ level: "error", msg: expect.stringMatching(/checkpoint thread stopped/), files: [a.file, b.file] });
    expect(checkpointThread()).toBeUndefined();
    // The commit that crosses the threshold checkpoints again, at once.
    writeRows(a);
    expect(fileSize(a)).toBeGreaterThan(PAGES * 3000);
  });

  it('leaves the checkpoints in the commits with checkpoint = "inline"', async () => {
    const conn = await openFile("a.db", { checkpoint: "inline" });
    expect(autocheckpoint(conn)).toBe(PAGES);
    expect(checkpointThread()).toBeUndefined();
    writeRows(conn);
    // No thread: the commits themselves copied the WAL into the file, before returning.
    expect(fileSize(conn)).toBeGreaterThan(PAGES * 3000);
    expect(checkpointThread()).toBeUndefined();
  });
});
