import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDataDir } from "../../test/support/platform.ts";
import { openSqlite } from "./sqlite.ts";

// Another process briefly holding a file — a backup, the sqlite3 shell, a connection closing and
// checkpointing — must not fail a start: the open waits its busy timeout like every statement.
describe("openSqlite", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDataDir();
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("waits out another process's lock on the file instead of failing the open", async () => {
    const file = join(dir, "m.db");
    (await openSqlite(file, { synchronous: "NORMAL", checkpoint: "inline" })).close();
    // The fault: another process takes the file's exclusive lock, says so, and lets go 1 s later.
    const holder = spawn(
      "bun",
      ["-e", `const { Database } = require("bun:sqlite"); const db = new Database(${JSON.stringify(file)}); db.exec("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE"); console.log("locked"); setTimeout(() => { db.exec("COMMIT"); db.close(); }, 1000);`],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise<number | null>((resolve) => holder.on("exit", resolve));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on("data", (d: Buffer) => d.toString().includes("locked") && resolve());
      holder.on("exit", (code) => reject(new Error(`the lock holder exited (${code}) before taking the lock`)));
    });
    const conn = await openSqlite(file, { synchronous: "NORMAL", checkpoint: "inline" });
    expect(conn.prepare("PRAGMA journal_mode").get<{ journal_mode: string }>()?.journal_mode).toBe("wal");
    conn.close();
    expect(await exited).toBe(0);
  });
});
