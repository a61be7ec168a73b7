/**
 * `bun run main.ts replay`: the operator's command against a running server — the real
 * `bun main.ts` twice, as child processes: the server, and the command that asks it to rebuild.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/platform.ts";
import { api, isBun, repoRoot, serverPool, settledProbe, type RunningServer } from "./harness.ts";

const replay = (args: string[]) => {
  const r = spawnSync("bun", ["main.ts", "replay", ...args], { cwd: repoRoot, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/tmp" }, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe.skipIf(!isBun)("replay command (e2e)", () => {
  const pool = serverPool();
  let srv: RunningServer;
  let customerId: string;
  const history = async () => (await api(srv.url).get(`/api/v1/customers/${customerId}/orders`)).body as { orders: Array<{ id: string; status: string }> };

  beforeAll(async () => {
    srv = await pool.start();
    const a = api(srv.url);
    const productId = (await a.post("/api/v1/products", { sku: "KOPI-1", name: "Kopi", priceCents: 2500 })).body.id as string;
    customerId = (await a.post("/api/v1/customers", { email: "sari@example.com", name: "Sari", creditLimitCents: 100_000 })).body.id as string;
    for (let i = 0; i < 3; i++) expect((await a.post("/api/v1/orders", { customerId, lines: [{ productId, quantity: 1 }] })).status).toBe(202);
    // No stock: each saga ends CANCELLED (out-of-stock). Then nothing moves any more.
    await waitFor(async () => (await history()).orders.filter((o) => o.status === "CANCELLED").length === 3, { what: "three cancelled orders in the history" });
    await waitFor(() => settledProbe(srv.url), { what: "a settled server" });
  });
  afterAll(() => pool.dispose());

  it("rebuilds order-history in the running server, printing progress, exit 0", async () => {
    const before = await history();
    const r = replay(["order-history.projection", "--port", String(srv.port)]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^rebuilding order-history\.projection from the retained events into a shadow copy/);
    expect(r.stdout).toMatch(/^ {2}rebuild +\d+\/\d+ events read \(\d+%\), \d+ applied$/m);
    expect(r.stdout).toMatch(/^ {2}catch-up .* — live consumer paused$/m);
    expect(r.stdout).toMatch(/^done: swapped in; \d+ events applied, checkpoint \{"log":\d+\}, \d+\.\d s$/m);
    expect(await history()).toEqual(before);
    // The server's log reaches the harness through a pipe: it may arrive after the command exited.
    const logged = await waitFor(() => srv.entries().find((e) => e.msg === "read model rebuilt and swapped in"), { what: "the server's log line of the swap" });
    expect(logged).toMatchObject({ consumer: "order-history.projection", skipped: 0 });
  });

  it("builds a point-in-time copy with --until and says where it is", async () => {
    const until = new Date().toISOString();
    const r = replay(["order-history.projection", "--until", until, "--port", String(srv.port), "--data-dir", srv.dataDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`building order-history.projection as of ${until} into a copy for inspection`);
    const kept = /^done: kept in (\S+\.db);/m.exec(r.stdout)?.[1];
    expect(kept).toMatch(/order-history\.pit-\d{8}T\d{6}\.\d{3}Z\.db$/);
    expect(existsSync(kept!)).toBe(true);
  });

  it("fails with exit 1 for a read model the server does not host, and 2 on bad usage", () => {
    const unknown = replay(["nope.projection", "--port", String(srv.port)]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/replay refused \(404\): no read model nope\.projection in this process \(it hosts order-history\.projection\)/);
    const usage = replay(["order-history.projection", "--until", "last tuesday", "--port", String(srv.port)]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--until expects an ISO 8601 time/);
  });
});
