/**
 * What an operator meets before the first request: --help, configuration errors, and a database
 * the binary must refuse to run against. The real `bun main.ts`, as a child process.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isBun, repoRoot, serverPool } from "./harness.ts";

const run = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync("bun", ["main.ts", ...args], { cwd: repoRoot, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/tmp", ...env }, encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe.skipIf(!isBun)("start-up (e2e)", () => {
  const pool = serverPool();
  afterAll(() => pool.dispose());

  it("--help lists every flag and key and exits 0", () => {
    const r = run(["--help"]);
    expect(r.code).toBe(0);
    for (const key of ["--config FILE", "--data-dir", "outbox.batchSize", "bus.maxDeliver", "SELARAS_OUTBOX__BATCH_SIZE"]) expect(r.stdout).toContain(key);
  });

  it("rejects bad configuration from flags and environment with one message per problem, exit 2", () => {
    const r = run(["--port", "abc", "--frobnicate"], { SELARAS_BUS__MAX_DELIVER: "0" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/port: .*"abc".*--port/);
    expect(r.stderr).toMatch(/--frobnicate/);
    expect(r.stderr).toMatch(/bus\.maxDeliver: .*SELARAS_BUS__MAX_DELIVER/);
  });

  it("refuses to start on a database migrated by a newer binary, naming the module and migration", async () => {
    const dataDir = pool.dir();
    const srv = await pool.start({ dataDir });
    await srv.stop();
    const specifier = "bun:sqlite"; // in a variable so the Node pass never resolves it
    const { Database } = (await import(specifier)) as typeof import("bun:sqlite");
    const db = new Database(join(dataDir, "orders.db"));
    db.run("INSERT INTO selaras_migrations (id, checksum, applied_at) VALUES ('9999_from_the_future', 'x', 0)");
    db.close();
    const r = run(["--port", "0", "--data-dir", dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/module orders: the database has migration 9999_from_the_future/);
  });

  it("refuses a second process on the same data dir, naming the files it holds; a kill -9 of the first frees them", async () => {
    const dataDir = pool.dir();
    const first = await pool.start({ dataDir });
    const r = run(["--port", "0", "--data-dir", dataDir]);
    expect(r.code).toBe(1);
    // The main thread's files; the module thread's were not reached.
    for (const file of ["catalog.db", "customers.db", "orders.db", "bus.db"]) expect(r.stderr).toContain(join(dataDir, file));
    expect(r.stderr).toMatch(/in use by another process/);
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
    // The operating system drops a dead process's locks: a crash never leaves the dir locked.
    await first.kill("SIGKILL");
    const second = await pool.start({ dataDir });
    expect((await fetch(`${second.url}/readyz`)).status).toBe(200);
  });
});
