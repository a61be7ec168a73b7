/**
 * `bun run build` makes one executable that runs any topology with no node_modules: the binary is
 * copied into an empty directory and the five processes of config/split.json run from it, on
 * Postgres + NATS, through one order from the public API, confirmed by the saga, into the read model;
 * and, embedded, its SQLite files are checkpointed by the binary's checkpoint thread.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/platform.ts";
import { api, isBun, repoRoot, startServer, startTopology, tempDir, type RunningTopology } from "./harness.ts";

describe.skipIf(!isBun)("the compiled binary (e2e)", () => {
  const dir = tempDir("selaras-binary-");
  const executable = join(dir, "selaras");

  beforeAll(() => {
    const built = join(dir, "build", "selaras");
    const r = spawnSync("bun", ["build", "--compile", "main.ts", "module-thread.ts", "--outfile", built], { cwd: repoRoot, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    copyFileSync(built, executable);
    rmSync(join(dir, "build"), { recursive: true });
    spawnSync("chmod", ["+x", executable]);
    expect(existsSync(join(dir, "node_modules"))).toBe(false);
  }, 120_000);
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe("split", () => {
    let topo: RunningTopology;
    beforeAll(async () => {
      topo = await startTopology("split", { executable });
    }, 120_000);
    afterAll(async () => {
      await topo?.stop();
    });

    it("runs the split topology on Postgres + NATS from an empty directory: an order is confirmed and reaches the read model", async () => {
      const run = Math.random().toString(36).slice(2, 8);
      const p = await topo.api.post("/api/v1/products", { sku: `${run}-bin`, name: "Teh Botol", priceCents: 700 });
      expect(p.status, p.text).toBe(201);
      const s = await topo.api.post(`/api/v1/inventory/${p.body.id}/restock`, { quantity: 5 });
      expect(s.status, s.text).toBe(200);
      const c = await topo.api.post("/api/v1/customers", { email: `bin.${run}@example.com`, name: "Bima", creditLimitCents: 10_000 });
      expect(c.status, c.text).toBe(201);
      const o = await topo.api.post("/api/v1/orders", { customerId: c.body.id, lines: [{ productId: p.body.id, quantity: 3 }] });
      expect(o.status, o.text).toBe(202);
      const history = await waitFor(async () => {
        const h = await topo.api.get(`/api/v1/customers/${c.body.id}/orders`);
        return h.body.orders?.[0]?.customerName === "Bima" && h.body.orders[0].lines[0]?.productName === "Teh Botol" && h.body.orders[0].status === "CONFIRMED" && h.body;
      }, { timeoutMs: 15_000, what: "the order CONFIRMED in the read model" });
      expect(history.orders).toMatchObject([{ id: o.body.id, status: "CONFIRMED", totalCents: 2100, lines: [{ quantity: 3 }] }]);
      expect((await topo.api.get(`/api/v1/inventory/${p.body.id}`)).body).toEqual({ productId: p.body.id, available: 2, reserved: 3 });
      // Five processes, each running the binary itself.
      expect(Object.keys(topo.processes).sort()).toEqual(["core", "history", "inventory", "orders", "payments"]);
      for (const srv of Object.values(topo.processes)) expect(readlinkSync(`/proc/${srv.proc.pid}/exe`)).toBe(executable);
    });
  });

  it("checkpoints the embedded topology's SQLite files on its checkpoint thread", async () => {
    const dataDir = tempDir("selaras-binary-embedded-");
    // 8 pages: a few writes cross it (the commits' own backstop is 80).
    const srv = await startServer({ executable, dataDir, env: { SELARAS_SQLITE__WAL_AUTOCHECKPOINT_PAGES: "8" }, args: ["--log-level", "debug"] });
    try {
      for (let i = 0; i < 20; i++) {
        const c = await api(srv.url).post("/api/v1/customers", { email: `ckpt.${i}@example.com`, name: "Citra", creditLimitCents: 1000 });
        expect(c.status, c.text).toBe(201);
      }
      expect((await srv.stop()).code).toBe(0);
      // Each file reports at close how often the thread checkpointed it.
      const reports = srv.entries().filter((e) => e.msg === "background WAL checkpoints");
      expect(reports.map((e) => e.file).sort()).toEqual(readdirSync(dataDir).filter((f) => f.endsWith(".db")).map((f) => join(dataDir, f)).sort());
      expect(reports.find((e) => e.file === join(dataDir, "customers.db"))?.checkpoints).toBeGreaterThan(0);
      // The thread let go of every file before its main connection closed, which then removed the WAL.
      expect(readdirSync(dataDir).filter((f) => f.endsWith("-wal"))).toEqual([]);
    } finally {
      await srv.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
