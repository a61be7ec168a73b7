import { randomBytes } from "node:crypto";
import type { Sql } from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../test/support/platform.ts";
import { pgConnect, pgOptions } from "../../test/support/postgres.ts";
import { timedPrefix } from "../../test/support/stale.ts";
import { createLogger } from "../observability/logger.ts";
import { dropPublication, dropSlot, ensureSlotAndPublication } from "./admin.ts";
import type { ChangeEvent } from "./change-event.ts";
import { parseLsn } from "./lsn.ts";
import { startCdc, type CdcOptions, type CdcReader, type ChangeBatch } from "./reader.ts";
import { CdcSetupError } from "./session.ts";

// Integration: the shared Postgres (wal_level=logical). Every object this file creates is named
// `cdct_<creation time, base 36 seconds>_<random>…`: its own slots and publications are dropped
// after each test, its schema after all; the suite's global set-up drops leftovers of killed runs
// (test/support/stale.ts) — a leaked slot would keep WAL on this shared server for ever.
const PREFIX = "cdct_";
const RUN = timedPrefix(PREFIX, randomBytes(3).toString("hex"));
const SCHEMA = RUN;
const MB = 1024 * 1024;

/** Records what the reader hands over: every attempt, and the batches the callback accepted. */
function consumer(fail: (changes: ChangeEvent[], batch: ChangeBatch) => boolean = () => false) {
  const attempts: Array<{ changes: ChangeEvent[]; batch: ChangeBatch }> = [];
  const delivered: Array<{ changes: ChangeEvent[]; batch: ChangeBatch }> = [];
  const onChanges = async (changes: ChangeEvent[], batch: ChangeBatch) => {
    attempts.push({ changes, batch });
    if (fail(changes, batch)) throw new Error("consumer is down");
    delivered.push({ changes, batch });
  };
  const events = () => delivered.flatMap((d) => d.changes);
  /** The `id` column of each delivered row, in delivery order. */
  const rowIds = () => events().map((e) => (e.after ?? e.before)?.id);
  return { attempts, delivered, onChanges, events, rowIds };
}

const hasRow = (changes: ChangeEvent[], id: number) => changes.some((c) => (c.after ?? c.before)?.id === id);

describe("CDC reader on a permanent pgoutput slot", () => {
  let admin: Sql;
  let n = 0;
  const readers: CdcReader[] = [];
  const slots: string[] = [];
  const logs: string[] = [];
  const logger = createLogger({ level: "debug", sink: (line) => logs.push(line) });

  beforeAll(async () => {
    admin = pgConnect();
    await admin.unsafe(`CREATE SCHEMA "${SCHEMA}"`);
  });
  afterEach(async () => {
    await Promise.allSettled(readers.splice(0).map((r) => r.stop()));
    for (const slot of slots.splice(0)) {
      await dropSlot(admin, slot);
      await dropPublication(admin, slot);
    }
  });
  afterAll(async () => {
    await admin.unsafe(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    await admin.end();
  });

  /** A fresh captured table (and slot and publication names, the same) for one test. */
  async function capturedTable(columns = "id int PRIMARY KEY, name text") {
    const table = `t${++n}`;
    const slot = `${RUN}_${table}`;
    slots.push(slot);
    await admin.unsafe(`CREATE TABLE "${SCHEMA}".${table} (${columns})`);
    return { table, slot, qualified: `"${SCHEMA}".${table}` };
  }

  async function start(slot: string, onChanges: CdcOptions["onChanges"], extra: Partial<CdcOptions> = {}) {
    const reader = await startCdc({ connection: pgOptions(), slot, publication: slot, onChanges, heartbeatMs: 100, logger, ...extra });
    readers.push(reader);
    return reader;
  }

  const slotState = async (slot: string) => {
    const [s] = await admin<{ confirmed: string; pid: number | null }[]>`
      SELECT confirmed_flush_lsn::text AS confirmed, active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${slot}`;
    if (!s) throw new Error(`no slot ${slot}`);
    return { confirmed: parseLsn(s.confirmed), pid: s.pid };
  };

  it("ensureSlotAndPublication is idempotent and keeps the publication to exactly the given tables", async () => {
    const a = await capturedTable();
    const b = await capturedTable();
    const spec = { slot: a.slot, publication: a.slot, tables: [{ schema: SCHEMA, table: a.table }] };
    expect(await ensureSlotAndPublication(admin, spec)).toEqual({ slotCreated: true, publicationCreated: true });
    expect(await ensureSlotAndPublication(admin, spec)).toEqual({ slotCreated: false, publicationCreated: false });
    await ensureSlotAndPublication(admin, { ...spec, tables: [{ schema: SCHEMA, table: b.table }] });
    const published = await admin`SELECT tablename FROM pg_publication_tables WHERE pubname = ${a.slot}`;
    expect(published.map((r) => r.tablename)).toEqual([b.table]);
    const [slot] = await admin`SELECT plugin, temporary FROM pg_replication_slots WHERE slot_name = ${a.slot}`;
    expect(slot).toEqual({ plugin: "pgoutput", temporary: false });
    const idents = await admin`SELECT relname, relreplident FROM pg_class WHERE relnamespace = ${SCHEMA}::regnamespace AND relname IN (${a.table}, ${b.table}) ORDER BY relname`;
    expect(idents.map((r) => r.relreplident)).toEqual(["f", "f"]);
  });

  it("captures inserts, updates and deletes once each, in commit order, a transaction's changes together", async () => {
    const t = await capturedTable("id int PRIMARY KEY, name text, qty int8, price numeric(10,2), doc jsonb, at timestamptz, flag bool");
    const other = await capturedTable(); // not in this publication
    const c = consumer();
    await start(t.slot, c.onChanges, { tables: [{ schema: SCHEMA, table: t.table }] });

    const txid = async (tx: Sql) => Number(BigInt((await tx`SELECT txid_current()::text AS x`)[0]!.x) & 0xffffffffn);
    const x1 = await admin.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO ${t.qualified} VALUES (1, 'kopi', 2, 12.50, '{"origin": ["bali"]}', '2024-05-01 10:00:00.123456+00', true)`);
      await tx.unsafe(`INSERT INTO ${t.qualified} VALUES (2, 'teh', 9007199254740993, 3.10, NULL, NULL, false)`);
      return txid(tx as unknown as Sql);
    });
    await admin.unsafe(`INSERT INTO ${other.qualified} VALUES (1, 'not captured')`);
    const x2 = await admin.begin(async (tx) => {
      await tx.unsafe(`UPDATE ${t.qualified} SET name = 'kopi luwak', qty = 3 WHERE id = 1`);
      return txid(tx as unknown as Sql);
    });
    const x3 = await admin.begin(async (tx) => {
      await tx.unsafe(`DELETE FROM ${t.qualified} WHERE id = 2`);
      return txid(tx as unknown as Sql);
    });
    // A last transaction: once it is here, anything before it that was coming has come.
    await admin.unsafe(`INSERT INTO ${t.qualified} (id) VALUES (99)`);
    await waitFor(() => c.rowIds().includes(99), { what: "the sentinel row" });

    const events = c.events();
    expect(events.map((e) => [e.op, (e.after ?? e.before)?.id])).toEqual([["c", 1], ["c", 2], ["u", 1], ["d", 2], ["c", 99]]);
    const kopi = { id: 1, name: "kopi", qty: 2, price: "12.50", doc: { origin: ["bali"] }, at: "2024-05-01T10:00:00.123456Z", flag: true };
    const teh = { id: 2, name: "teh", qty: "9007199254740993", price: "3.10", doc: null, at: null, flag: false };
    expect(events.slice(0, 4).map((e) => [e.before, e.after])).toEqual([
      [null, kopi],
      [null, teh],
      [kopi, { ...kopi, name: "kopi luwak", qty: 3 }],
      [teh, null],
    ]);
    const source = { connector: "postgresql", db: "test", schema: SCHEMA, table: t.table, snapshot: false };
    for (const e of events) expect(e.source).toMatchObject(source);
    expect(events.slice(0, 4).map((e) => e.source.txId)).toEqual([x1, x1, x2, x3]);
    // Commit order, and each change's own position within its transaction.
    const commits = events.map((e) => e.source.commitLsn);
    expect([...commits].sort((a, b) => a - b)).toEqual(commits);
    expect(events[1]!.source.lsn).toBeGreaterThan(events[0]!.source.lsn);
    expect(events.map((e) => e.id)).toEqual(events.map((e) => `${e.source.commitLsn}:${e.id.split(":")[1]}`));
    expect(events.slice(0, 2).map((e) => e.id.split(":")[1])).toEqual(["0", "1"]);
    expect(new Set(events.map((e) => e.id)).size).toBe(5);
    // Never a transaction split over two calls.
    for (const txId of [x1, x2, x3]) expect(c.delivered.filter((d) => d.changes.some((e) => e.source.txId === txId))).toHaveLength(1);
    expect(c.attempts).toHaveLength(c.delivered.length);
  });

  it("resumes after a restart from the slot: nothing confirmed repeats, nothing committed is lost", async () => {
    const t = await capturedTable();
    await ensureSlotAndPublication(admin, { slot: t.slot, publication: t.slot, tables: [{ schema: SCHEMA, table: t.table }] });
    // The first reader's consumer accepts row 1 and then keeps failing on row 2.
    const a = consumer((changes) => hasRow(changes, 2));
    const first = await start(t.slot, a.onChanges, { retry: { initialMs: 5, maxMs: 20 } });
    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (1, 'confirmed')`);
    await waitFor(() => a.delivered.length === 1, { what: "row 1" });
    const end1 = parseLsn(a.delivered[0]!.batch.endLsn);
    await waitFor(async () => (await slotState(t.slot)).confirmed >= end1, { what: "the server to hold row 1's confirmation" });
    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (2, 'received, never accepted')`);
    await waitFor(() => a.attempts.length >= 2, { what: "attempts at row 2" });
    await first.stop();
    expect(parseLsn(first.confirmedLsn)).toBeLessThan(parseLsn(a.attempts[1]!.batch.endLsn));

    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (3, 'while stopped'); INSERT INTO ${t.qualified} VALUES (4, 'while stopped')`);
    const b = consumer();
    await start(t.slot, b.onChanges);
    await waitFor(() => b.rowIds().includes(4), { what: "row 4" });
    expect(b.rowIds()).toEqual([2, 3, 4]);
    // Row 2 comes with the same id as when the first reader failed on it.
    expect(b.events()[0]!.id).toBe(a.attempts[1]!.changes[0]!.id);
    expect(a.rowIds()).toEqual([1]);
  });

  it("survives pg_terminate_backend of its walsender: reconnects and delivers everything once", async () => {
    const t = await capturedTable();
    await ensureSlotAndPublication(admin, { slot: t.slot, publication: t.slot, tables: [{ schema: SCHEMA, table: t.table }] });
    const c = consumer();
    const reader = await start(t.slot, c.onChanges, { retry: { initialMs: 10, maxMs: 100 } });
    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (1, 'before')`);
    await waitFor(() => c.rowIds().includes(1), { what: "row 1" });

    for (const [round, id] of [[1, 2], [2, 3]] as const) {
      const { pid } = await slotState(t.slot);
      expect(pid).not.toBeNull();
      expect((await admin`SELECT pg_terminate_backend(${pid})`)[0]!.pg_terminate_backend).toBe(true);
      await admin`INSERT INTO ${admin(SCHEMA)}.${admin(t.table)} VALUES (${id}, 'after a kill')`;
      await waitFor(() => c.rowIds().includes(id), { what: `row ${id}`, timeoutMs: 20_000 });
      expect(reader.reconnects).toBe(round);
      expect((await slotState(t.slot)).pid).not.toBe(pid);
    }
    expect(c.rowIds()).toEqual([1, 2, 3]);
    expect(logs.some((l) => l.includes("cdc connection lost") && l.includes(t.slot))).toBe(true);
  });

  it("keeps an idle slot from hoarding WAL written to tables it does not capture", async () => {
    const t = await capturedTable();
    const noise = await capturedTable("id int, pad text");
    await ensureSlotAndPublication(admin, { slot: t.slot, publication: t.slot, tables: [{ schema: SCHEMA, table: t.table }] });
    const c = consumer();
    const reader = await start(t.slot, c.onChanges);
    const before = parseLsn((await admin`SELECT pg_current_wal_lsn()::text AS l`)[0]!.l);
    await admin.unsafe(`INSERT INTO ${noise.qualified} SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 4000) g`);
    const after = parseLsn((await admin`SELECT pg_current_wal_lsn()::text AS l`)[0]!.l);
    expect(Number(after - before)).toBeGreaterThan(4 * MB); // the bound below means something

    await waitFor(async () => (await reader.lag()) < MB, { what: "the slot's lag to fall below 1 MB", timeoutMs: 20_000 });
    expect((await slotState(t.slot)).confirmed).toBeGreaterThan(after - BigInt(MB));
    expect(c.attempts).toEqual([]);
  });

  it("delivers a batch again when the consumer throws, and confirms nothing past it", async () => {
    const t = await capturedTable();
    await ensureSlotAndPublication(admin, { slot: t.slot, publication: t.slot, tables: [{ schema: SCHEMA, table: t.table }] });
    const a = consumer(() => true); // always down
    const first = await start(t.slot, a.onChanges, { heartbeatMs: 20, retry: { initialMs: 5, maxMs: 20 } });
    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (1, 'x')`);
    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (2, 'y')`);
    await waitFor(() => a.attempts.length >= 4, { what: "retries" });
    const end1 = parseLsn(a.attempts[0]!.batch.endLsn);
    // Every attempt is the same batch, starting with row 1; heartbeats went out meanwhile.
    expect(a.attempts.map((x) => x.batch.attempt).slice(0, 4)).toEqual([1, 2, 3, 4]);
    for (const x of a.attempts) expect(x.changes.map((e) => e.id)).toEqual(a.attempts[0]!.changes.map((e) => e.id));
    expect(hasRow(a.attempts[0]!.changes, 1)).toBe(true);
    expect((await slotState(t.slot)).confirmed).toBeLessThan(end1);
    await first.stop();
    expect((await slotState(t.slot)).confirmed).toBeLessThan(end1);

    // A consumer that fails once: the batch comes again, then the rest, in order.
    const b = consumer((_changes, batch) => batch.attempt === 1);
    const second = await start(t.slot, b.onChanges, { retry: { initialMs: 5, maxMs: 20 } });
    await waitFor(() => b.rowIds().includes(2), { what: "row 2" });
    expect(b.rowIds()).toEqual([1, 2]);
    expect(b.attempts[0]!.changes.map((e) => e.id)).toEqual(b.attempts[1]!.changes.map((e) => e.id));
    expect(b.events()[0]!.id).toBe(a.attempts[0]!.changes[0]!.id);
    const last = parseLsn(b.delivered.at(-1)!.batch.endLsn);
    await waitFor(async () => (await slotState(t.slot)).confirmed >= last, { what: "the confirmation after success" });
    expect(parseLsn(second.confirmedLsn)).toBeGreaterThanOrEqual(last);
  });

  it("a slow consumer holds the stream back without losing, splitting or reordering transactions", async () => {
    const t = await capturedTable();
    await ensureSlotAndPublication(admin, { slot: t.slot, publication: t.slot, tables: [{ schema: SCHEMA, table: t.table }] });
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const c = consumer();
    const onChanges = async (changes: ChangeEvent[], batch: ChangeBatch) => {
      await gate;
      await c.onChanges(changes, batch);
    };
    await start(t.slot, onChanges, { maxQueuedChanges: 5, maxBatchChanges: 3 });
    for (let id = 1; id <= 30; id++) await admin`INSERT INTO ${admin(SCHEMA)}.${admin(t.table)} VALUES (${id}, 'one')`;
    await admin.unsafe(`INSERT INTO ${t.qualified} SELECT g, 'big' FROM generate_series(31, 50) g`);
    await admin`INSERT INTO ${admin(SCHEMA)}.${admin(t.table)} VALUES (51, 'last')`;
    const logged = (what: string) => logs.some((l) => l.includes(t.slot) && l.includes(what));
    await waitFor(() => logged("pausing the stream"), { what: "the reader to stop reading" });
    open();
    await waitFor(() => c.rowIds().includes(51), { what: "row 51" });
    expect(logged("resuming the stream")).toBe(true);
    expect(c.rowIds()).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    for (const d of c.delivered) {
      if (d.batch.transactions > 1) expect(d.changes.length).toBeLessThanOrEqual(3);
    }
    // The 20-row transaction is larger than a batch: it comes alone, and whole.
    expect(c.delivered.find((d) => hasRow(d.changes, 31))!.changes).toHaveLength(20);
  });

  it("retries a slot it cannot decode, logging the server's error, without crashing or hanging stop()", async () => {
    const t = await capturedTable();
    // The wrong order, on purpose: WAL from before the publication existed cannot be decoded with it.
    await admin`SELECT pg_create_logical_replication_slot(${t.slot}, 'pgoutput')`;
    await admin.unsafe(`INSERT INTO ${t.qualified} VALUES (1, 'too early')`);
    await admin.unsafe(`CREATE PUBLICATION "${t.slot}" FOR TABLE ${t.qualified}`);
    const c = consumer();
    const reader = await start(t.slot, c.onChanges, { retry: { initialMs: 5, maxMs: 20 } });
    const failures = () => logs.filter((l) => l.includes(t.slot) && l.includes('"level":"error"') && l.includes("does not exist"));
    await waitFor(() => failures().length >= 3, { what: "repeated decoding failures" });
    expect(c.attempts).toEqual([]);
    await reader.stop();
  });

  it("refuses to start on a slot that does not exist, instead of retrying for ever", async () => {
    const missing = `${RUN}_missing`;
    await expect(startCdc({ connection: pgOptions(), slot: missing, publication: missing, onChanges: () => {}, logger })).rejects.toThrow(CdcSetupError);
  });
});
