/**
 * `bun run build` makes one executable that runs any topology with no node_modules: the binary is
 * copied into an empty directory and the three processes of config/split.json run from it, on
 * Postgres + NATS, through one order from the public API into the read model.
 *
 * Bun pass only: see the note in harness.ts.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/platform.ts";
import { isBun, repoRoot, startTopology, tempDir, type RunningTopology } from "./harness.ts";

describe.skipIf(!isBun)("the compiled binary (e2e)", () => {
  const dir = tempDir("selaras-binary-");
  const executable = join(dir, "selaras");
  let topo: RunningTopology;

  beforeAll(async () => {
    const built = join(dir, "build", "selaras");
    const r = spawnSync("bun", ["build", "--compile", "main.ts", "--outfile", built], { cwd: repoRoot, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    copyFileSync(built, executable);
    rmSync(join(dir, "build"), { recursive: true });
    spawnSync("chmod", ["+x", executable]);
    expect(existsSync(join(dir, "node_modules"))).toBe(false);
    topo = await startTopology("split", { executable });
  }, 120_000);
  afterAll(async () => {
    await topo?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the split topology on Postgres + NATS from an empty directory: an order reaches the read model", async () => {
    const run = Math.random().toString(36).slice(2, 8);
    const p = await topo.api.post("/api/v1/products", { sku: `${run}-bin`, name: "Teh Botol", priceCents: 700 });
    expect(p.status, p.text).toBe(201);
    const c = await topo.api.post("/api/v1/customers", { email: `bin.${run}@example.com`, name: "Bima", creditLimitCents: 10_000 });
    expect(c.status, c.text).toBe(201);
    const o = await topo.api.post("/api/v1/orders", { customerId: c.body.id, lines: [{ productId: p.body.id, quantity: 3 }] });
    expect(o.status, o.text).toBe(202);
    const history = await waitFor(async () => {
      const h = await topo.api.get(`/api/v1/customers/${c.body.id}/orders`);
      return h.body.orders?.[0]?.customerName === "Bima" && h.body.orders[0].lines[0]?.productName === "Teh Botol" && h.body;
    }, { what: "the order in the read model" });
    expect(history.orders).toMatchObject([{ id: o.body.id, totalCents: 2100, lines: [{ quantity: 3 }] }]);
    // Three processes, each running the binary itself.
    expect(Object.keys(topo.processes).sort()).toEqual(["core", "history", "orders"]);
    for (const srv of Object.values(topo.processes)) expect(readlinkSync(`/proc/${srv.proc.pid}/exe`)).toBe(executable);
  });
});
