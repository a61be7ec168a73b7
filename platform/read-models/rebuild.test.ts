import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { sql } from "drizzle-orm";
import { sqliteTable, text } from "drizzle-orm/sqlite-core";
import { afterEach, describe, expect, it } from "vitest";
import { bootModules, tempDataDir, waitFor } from "../../test/support/platform.ts";
import type { EmbeddedBus } from "../bus/embedded.ts";
import type { PlatformConfig } from "../config/schema.ts";
import type { EventEnvelope } from "../bus/types.ts";
import { newId } from "../ids.ts";
import { defineModule, on, type ModuleManifest } from "../module.ts";
import { errorReason } from "../rpc/errors.ts";
import { statementsFor } from "../storage/statements.ts";

// The rebuild's edges, with a one-table read model of its own (platform tests import no module):
// notes, one row per aggregate, from StringValue events.

const notes = sqliteTable("notes", { id: text("id").primaryKey(), text: text("text").notNull() });
const putNote = statementsFor({ sqlite: { notes }, postgres: { notes } }).write((db, t) =>
  db
    .insert(t.notes)
    .values({ id: sql.placeholder("id"), text: sql.placeholder("text") })
    .onConflictDoUpdate({ target: t.notes.id, set: { text: sql`excluded.text` } }),
);
const CONSUMER = "notes.view";

const pins = sqliteTable("pins", { noteId: text("note_id").primaryKey() });
const putPin = statementsFor({ sqlite: { pins }, postgres: { pins } }).write((db, t) => db.insert(t.pins).values({ noteId: sql.placeholder("id") }));

/**
 * The notes module; `render` is its handler's logic (a deploy may change it; undefined writes no
 * note), "poison" always fails. With `pinned`, a table outside the read model references notes:
 * `pins.note_id` → `notes.id`.
 */
function notesModule(render: (text: string) => string | undefined = (s) => s, opts: { pinned?: boolean } = {}): ModuleManifest {
  const pinsSql = opts.pinned ? " CREATE TABLE pins (note_id TEXT PRIMARY KEY REFERENCES notes(id));" : "";
  return defineModule({
    name: "notes",
    migrations: { sqlite: [{ id: "0001_init", sql: `CREATE TABLE notes (id TEXT PRIMARY KEY, text TEXT NOT NULL);${pinsSql}` }] },
    start: () => ({
      subscriptions: [
        {
          name: "view",
          readModel: { tables: ["notes"] },
          handlers: [
            on(StringValueSchema, (e, meta, tx) => {
              if (e.value === "poison") throw new Error("cannot render poison");
              const text = render(e.value);
              if (text !== undefined) tx.write(putNote, { id: meta.aggregateId, text });
            }),
          ],
        },
      ],
    }),
  });
}

const note = (id: string, value: string): EventEnvelope => ({
  id: newId(),
  type: StringValueSchema.typeName,
  source: "test",
  aggregateId: id,
  payload: toBinary(StringValueSchema, create(StringValueSchema, { value })),
  headers: {},
  occurredAt: Date.now(),
});

describe("read model rebuild", () => {
  const dirs: string[] = [];
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function boot(module = notesModule(), dataDir = tempDataDir()) {
    if (!dirs.includes(dataDir)) dirs.push(dataDir);
    // Parsed with the defaults by testConfig: only what differs is given.
    const t = await bootModules([module], { dataDir, logLevel: "warn", bus: { maxDeliver: 2, backoffMs: [1] } as PlatformConfig["bus"] });
    stop = () => t.platform.stop();
    const rows = () => t.platform.storage("notes").queryRaw<{ id: string; text: string }>("SELECT id, text FROM notes ORDER BY id");
    return { ...t, rows };
  }

  it("applies a changed handler to every retained event: what a deploy with new read-model code runs", async () => {
    const v1 = await boot();
    await v1.platform.bus.publish([note("a", "kopi"), note("b", "teh"), note("a", "kopi susu")]);
    await waitFor(async () => (await v1.rows()).length === 2 && (await v1.platform.bus.consumerLag()).get(CONSUMER) === 0);
    await v1.platform.stop();

    const v2 = await boot(notesModule((s) => s.toUpperCase()), v1.dataDir);
    await v2.platform.bus.publish([note("c", "gula")]);
    await waitFor(async () => (await v2.rows()).length === 3);
    expect(await v2.rows()).toEqual([{ id: "a", text: "kopi susu" }, { id: "b", text: "teh" }, { id: "c", text: "GULA" }]);

    const result = await v2.platform.readModels.replay(CONSUMER);
    expect(result).toMatchObject({ mode: "swapped", record: { events: 4, skipped: 0, checkpoint: { log: 4 } } });
    expect(await v2.rows()).toEqual([{ id: "a", text: "KOPI SUSU" }, { id: "b", text: "TEH" }, { id: "c", text: "GULA" }]);
    expect(existsSync(join(v2.dataDir, "notes.rebuild.db"))).toBe(false);
    // The live consumer goes on from its checkpoint.
    await v2.platform.bus.publish([note("d", "susu")]);
    await waitFor(async () => (await v2.rows()).some((r) => r.text === "SUSU"));
  });

  it("skips an event its handler keeps failing on, which the live consumer dead-lettered too", async () => {
    const t = await boot();
    await t.platform.bus.publish([note("a", "kopi"), note("b", "poison"), note("c", "teh")]);
    await waitFor(async () => (await t.platform.bus.deadLetters(CONSUMER)).length === 1 && (await t.rows()).length === 2);
    const result = await t.platform.readModels.replay(CONSUMER);
    expect(result.record).toMatchObject({ events: 2, skipped: 1 });
    expect(await t.rows()).toEqual([{ id: "a", text: "kopi" }, { id: "c", text: "teh" }]);
    expect(t.logs.some((l) => l.includes("rebuild skipped an event its handler keeps failing on"))).toBe(true);
  });

  it("refuses when the bus no longer holds the read model's first events, changing nothing", async () => {
    const t = await boot();
    await t.platform.bus.publish([note("a", "kopi")]);
    await waitFor(async () => (await t.rows()).length === 1);
    // As if pruning had removed the first events before this read model was retained.
    (t.platform.bus as EmbeddedBus).conn.exec(`INSERT INTO bus_pruned (type, through_seq) VALUES ('${StringValueSchema.typeName}', 1)`);
    const err = await t.platform.readModels.replay(CONSUMER).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(errorReason(err as ConnectError)).toBe("events-not-retained");
    expect((err as ConnectError).rawMessage).toMatch(/log: google\.protobuf\.StringValue pruned up to seq 1/);
    expect(await t.rows()).toEqual([{ id: "a", text: "kopi" }]);
    expect(existsSync(join(t.dataDir, "notes.rebuild.db"))).toBe(false);
  });

  it("refuses a swap that would break a foreign key from a table outside the read model, changing nothing", async () => {
    const v1 = await boot(notesModule(undefined, { pinned: true }));
    await v1.platform.bus.publish([note("a", "kopi"), note("b", "teh")]);
    await waitFor(async () => (await v1.rows()).length === 2);
    await v1.platform.storage("notes").transact((tx) => tx.write(putPin, { id: "b" }));
    await v1.platform.stop();

    // The new code no longer writes "teh": the rebuilt notes lack b, which a pin references.
    const v2 = await boot(notesModule((s) => (s === "teh" ? undefined : s), { pinned: true }), v1.dataDir);
    const err = await v2.platform.readModels.replay(CONSUMER).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/breaks 1 foreign key\(s\), e\.g\. pins -> notes/);
    expect(await v2.rows()).toEqual([{ id: "a", text: "kopi" }, { id: "b", text: "teh" }]);
    expect(existsSync(join(v2.dataDir, "notes.rebuild.db"))).toBe(false);
    // Enforcement is back on: the live connection still refuses a dangling pin.
    await expect(v2.platform.storage("notes").transact((tx) => tx.write(putPin, { id: "nope" }))).rejects.toThrow(/FOREIGN KEY/);
  });

  it("leaves the live read model and its consumer as they were when aborted", async () => {
    const t = await boot();
    await t.platform.bus.publish(Array.from({ length: 600 }, (_, i) => note(`n${i}`, `note ${i}`)));
    await waitFor(async () => (await t.rows()).length === 600);
    const abort = new AbortController();
    const err = await t.platform.readModels.replay(CONSUMER, { signal: abort.signal, onProgress: () => abort.abort(new Error("operator changed their mind")) }).catch((e: unknown) => e);
    expect((err as Error).message).toBe("operator changed their mind");
    expect(existsSync(join(t.dataDir, "notes.rebuild.db"))).toBe(false);
    await t.platform.bus.publish([note("late", "still consumed")]);
    await waitFor(async () => (await t.rows()).some((r) => r.id === "late"));
    const [info] = (await t.platform.readModels.list()).filter((r) => r.consumer === CONSUMER);
    expect(info).toMatchObject({ rebuilding: false, checkpoint: { log: 601 } });
    expect(info!.lastRebuild).toBeUndefined();
  });
});
