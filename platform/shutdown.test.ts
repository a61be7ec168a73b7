import { describe, expect, it } from "vitest";
import { bootModules, waitFor } from "../test/support/platform.ts";
import { defineModule } from "./module.ts";

const pinger = defineModule({
  name: "pinger",
  migrations: { sqlite: [] },
  start: () => ({ routes: (app) => app.get("/ping", (c) => c.text("pong")) }),
});

const isBun = typeof (process.versions as Record<string, string | undefined>).bun === "string";

// listen() needs Bun.serve.
describe.skipIf(!isBun)("graceful stop", () => {
  it("answers 503 on /readyz but keeps serving for shutdown.drainMs, then closes the listener and logs each step", async () => {
    const t = await bootModules([pinger], { shutdown: { drainMs: 1500, timeoutMs: 30_000 }, logLevel: "info" });
    const { url } = await t.platform.listen();
    expect((await fetch(`${url}/readyz`)).status).toBe(200);

    const stopped = t.dispose();
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 503, { what: "/readyz to answer 503" });
    // Still serving meanwhile: a load balancer that has not noticed yet loses nothing.
    const during = await fetch(`${url}/ping`);
    expect([during.status, await during.text()]).toEqual([200, "pong"]);
    await stopped;
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    const msgs = t.logs.map((l) => JSON.parse(l).msg as string);
    const order = ["draining: not ready, still serving", "stopped taking requests; in-flight requests finished", "outbox relay flushed", "platform stopped"];
    expect(order.map((m) => msgs.indexOf(m))).toEqual([...order.map((m) => msgs.indexOf(m))].sort((a, b) => a - b));
    expect(order.every((m) => msgs.includes(m))).toBe(true);
  });
});
