// Two test modules for the capture tests (platform tests cannot use the real modules): `shelf`
// owns a table and knows nothing of capture; `watcher` declares the capture and records every
// change event it consumes, through the platform's consumer and inbox like any module.
import { sql } from "drizzle-orm";
import { blob, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { bigint as pgBigint, customType as pgCustomType, pgTable, serial, text as pgText } from "drizzle-orm/pg-core";
import { ChangeEventSchema } from "../../gen/selaras/v1/cdc_pb.ts";
import type { Platform } from "../platform.ts";
import { defineModule, on } from "../module.ts";
import { statementsFor } from "../storage/statements.ts";
import { isChangeOf } from "./capture-event.ts";

const pgBytea = pgCustomType<{ data: Uint8Array }>({ dataType: () => "bytea" });

const shelfSqlite = { items: sqliteTable("items", { id: text("id").primaryKey(), name: text("name").notNull(), qty: integer("qty").notNull(), photo: blob("photo") }) };
const shelfPg = { items: pgTable("items", { id: pgText("id").primaryKey(), name: pgText("name").notNull(), qty: pgBigint("qty", { mode: "number" }).notNull(), photo: pgBytea("photo") }) };

const p = sql.placeholder;
const shelfQ = statementsFor({ sqlite: shelfSqlite, postgres: shelfPg });
/** The shelf's own writes, as a module would write them (the capture is not involved). */
export const shelfWrites = {
  insert: shelfQ.write((db, t) => db.insert(t.items).values({ id: p("id"), name: p("name"), qty: p("qty"), photo: p("photo") })),
  rename: shelfQ.write((db, t) => db.update(t.items).set({ name: sql`${p("name")}` }).where(sql`${t.items.id} = ${p("id")}`)),
  remove: shelfQ.write((db, t) => db.delete(t.items).where(sql`${t.items.id} = ${p("id")}`)),
};

/** A module owning one table, `items`, in either dialect. It publishes nothing. */
export const shelf = defineModule({
  name: "shelf",
  migrations: {
    sqlite: [{ id: "0001_items", sql: "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, photo BLOB);" }],
    postgres: [{ id: "0001_items", sql: "CREATE TABLE items (id text PRIMARY KEY, name text NOT NULL, qty bigint NOT NULL, photo bytea);" }],
  },
  start: () => ({}),
});

const watcherSqlite = {
  seen: sqliteTable("seen", {
    n: integer("n").primaryKey({ autoIncrement: true }),
    eventId: text("event_id").notNull(),
    aggregateId: text("aggregate_id").notNull(),
    op: text("op").notNull(),
    event: text("event").notNull(),
  }),
};
const watcherPg = {
  seen: pgTable("seen", { n: serial("n").primaryKey(), eventId: pgText("event_id").notNull(), aggregateId: pgText("aggregate_id").notNull(), op: pgText("op").notNull(), event: pgText("event").notNull() }),
};
const record = statementsFor({ sqlite: watcherSqlite, postgres: watcherPg }).write((db, t) =>
  db.insert(t.seen).values({ eventId: p("eventId"), aggregateId: p("aggregateId"), op: p("op"), event: p("event") }),
);

/** A module consuming the shelf's `items` changes: one `seen` row per change it processed. */
export const watcher = defineModule({
  name: "watcher",
  migrations: {
    sqlite: [{ id: "0001_seen", sql: "CREATE TABLE seen (n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, aggregate_id TEXT NOT NULL, op TEXT NOT NULL, event TEXT NOT NULL);" }],
    postgres: [{ id: "0001_seen", sql: "CREATE TABLE seen (n serial PRIMARY KEY, event_id text NOT NULL, aggregate_id text NOT NULL, op text NOT NULL, event text NOT NULL);" }],
  },
  captures: [{ module: "shelf", table: "items" }],
  start: () => ({
    subscriptions: [
      {
        name: "changes",
        handlers: [
          on(ChangeEventSchema, (e, meta, tx) => {
            if (!isChangeOf(e, "shelf", "items")) return;
            const event = { op: e.op, before: e.before ?? null, after: e.after ?? null, source: { ...e.source, lsn: Number(e.source?.lsn), commitLsn: Number(e.source?.commitLsn), txId: Number(e.source?.txId), tsMs: Number(e.source?.tsMs) }, occurredAt: meta.occurredAt, source_module: meta.source };
            tx.write(record, { eventId: meta.id, aggregateId: meta.aggregateId, op: e.op, event: JSON.stringify(event) });
          }),
        ],
      },
    ],
  }),
});

/** One change as the watcher recorded it. */
export interface Seen {
  eventId: string;
  aggregateId: string;
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: { connector: string; db: string; schema: string; table: string; module: string; lsn: number; commitLsn: number; txId: number; tsMs: number; snapshot: boolean };
  occurredAt: number;
  sourceModule: string;
}

/** Every change the watcher processed, in processing order. */
export async function seen(platform: Platform): Promise<Seen[]> {
  const rows = await platform.storage("watcher").queryRaw<{ event_id: string; aggregate_id: string; op: string; event: string }>("SELECT event_id, aggregate_id, op, event FROM seen ORDER BY n");
  return rows.map((r) => {
    const e = JSON.parse(r.event) as Omit<Seen, "eventId" | "aggregateId" | "sourceModule"> & { source_module: string };
    return { eventId: r.event_id, aggregateId: r.aggregate_id, op: r.op, before: e.before, after: e.after, source: e.source, occurredAt: e.occurredAt, sourceModule: e.source_module };
  });
}

/** Runs writes of the shelf's table in one transaction of the shelf's storage. */
export function shelfTx(platform: Platform, ...writes: Array<[keyof typeof shelfWrites, Record<string, unknown>]>): Promise<void> {
  return platform.storage("shelf").transact((tx) => {
    for (const [w, values] of writes) tx.write(shelfWrites[w], { photo: null, ...values });
  });
}
