// A subscription's linger as the platform sets it: the module's own `lingerMs`, overridden by
// `bus.lingerMs.<module>.<subscription>`, which may only name subscriptions the module has. The
// linger itself is bus behaviour (bus.conformance.ts, "lingers").
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { bootModules, waitFor } from "../../test/support/platform.ts";
import { PlatformConfigSchema } from "../config/schema.ts";
import { defineModule, on } from "../module.ts";

/** A writer publishing one event per POST, and a reader whose subscription lingers 600 s. */
function modules(seen: string[]) {
  const writer = defineModule({
    name: "writer",
    migrations: { sqlite: [{ id: "0001_init", sql: "CREATE TABLE drafts (id TEXT PRIMARY KEY);" }], postgres: [{ id: "0001_init", sql: "CREATE TABLE drafts (id TEXT PRIMARY KEY);" }] },
    publishes: [ErrorInfoSchema],
    start: (ctx) => ({
      routes: (app) => app.post("/test/note", async (c) => c.json({ id: await ctx.storage.transact((tx) => tx.publish(ErrorInfoSchema, "a", { reason: "r" })) })),
    }),
  });
  const reader = defineModule({
    name: "reader",
    migrations: { sqlite: [], postgres: [] },
    start: () => ({ subscriptions: [{ name: "projection", lingerMs: 600_000, handlers: [on(ErrorInfoSchema, (_e, meta) => void seen.push(meta.id))] }] }),
  });
  return [writer, reader];
}

const lingering = (lingerMs: Record<string, Record<string, number>>) => ({ bus: PlatformConfigSchema.shape.bus.parse({ lingerMs }) });

describe("bus.lingerMs", () => {
  it("overrides the subscription's own linger: 0 delivers a lone event that would otherwise wait 600 s", async () => {
    const seen: string[] = [];
    const t = await bootModules(modules(seen), lingering({ reader: { projection: 0 } }));
    try {
      const res = await t.platform.fetch(new Request("http://x/test/note", { method: "POST" }));
      const { id } = (await res.json()) as { id: string };
      await waitFor(() => seen.includes(id), { what: "the event, delivered without lingering" });
    } finally {
      await t.dispose();
    }
  });

  it("refuses a subscription the module does not have, naming the ones it has", async () => {
    await expect(bootModules(modules([]), lingering({ reader: { projektion: 20 } }))).rejects.toThrow('bus.lingerMs.reader.projektion: module reader has no subscription "projektion" (its subscriptions: projection)');
    await expect(bootModules(modules([]), lingering({ writer: { projection: 20 } }))).rejects.toThrow('bus.lingerMs.writer.projection: module writer has no subscription "projection" (it has none)');
  });
});
