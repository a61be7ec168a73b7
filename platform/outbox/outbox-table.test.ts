import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../test/support/platform.ts";
import { dropPg, pgConnect, randomPgPrefix } from "../../test/support/postgres.ts";
import { newId } from "../ids.ts";
import { createLogger } from "../observability/logger.ts";
import type { OutboxRow } from "../storage/module-storage.ts";
import { migratePostgres } from "../storage/postgres/migrate.ts";
import { moduleSchemaName, provisionModules } from "../storage/postgres/provision.ts";
import { OutboxTable } from "./outbox-table.ts";

const quiet = createLogger({ level: "error", sink: () => {} });

/** A streamed row as the relay holds it (only `seq` matters to the table). */
const row = (seq: number): OutboxRow => ({ seq, event_id: newId(), aggregate_id: "a", type: "t.v1.T", payload: new Uint8Array(), headers: "{}", created_at: 0 });

describe("the outbox table as the WAL relay marks it (unit, scripted answers)", () => {
  /** A storage whose queries answer from `answers` in turn, recording each query's text. */
  function scripted(...answers: unknown[][]) {
    const queries: string[] = [];
    const storage = {
      queryRaw: async (text: string) => {
        queries.push(text.replace(/\s+/g, " ").trim().split(" ").slice(0, 2).join(" "));
        return answers.shift() ?? [];
      },
    };
    return { queries, storage };
  }

  it("marks again after the visibility barrier when the last row was not visible yet to its first UPDATE", async () => {
    const { queries, storage } = scripted([{ visible: false }], [{}], [{ visible: true }]);
    await new OutboxTable(storage as never, "s", quiet).markPublished(7, 1);
    expect(queries).toEqual(["WITH marked", "SELECT pg_advisory_xact_lock_shared(hashtext('selaras.outbox'),", "WITH marked"]);
  });

  it("marks once when the last row was visible", async () => {
    const { queries, storage } = scripted([{ visible: true }]);
    await new OutboxTable(storage as never, "s", quiet).markPublished(7, 1);
    expect(queries).toEqual(["WITH marked"]);
  });

  it("asks which streamed rows are unpublished only after the barrier", async () => {
    const { queries, storage } = scripted([{}], [{ seq: 3 }, { seq: 4 }]);
    const open = await new OutboxTable(storage as never, "s", quiet).notYetPublished([row(2), row(3), row(4)]);
    expect(open.map((r) => r.seq)).toEqual([3, 4]);
    expect(queries).toEqual(["SELECT pg_advisory_xact_lock_shared(hashtext('selaras.outbox'),", "SELECT seq::float8"]);
  });
});

// Integration: the shared Postgres. Creates one schema and role `t_<time>_<random>_orders`, drops them.
describe("the outbox table as the WAL relay marks it (Postgres)", () => {
  const schema = moduleSchemaName(randomPgPrefix(), "orders");
  let admin: Sql;
  let sql: Sql; // as the module's role
  let table: OutboxTable;

  beforeAll(async () => {
    admin = pgConnect();
    await provisionModules(admin, [{ module: "orders", schema, role: schema, database: "test" }]);
    sql = pgConnect(schema);
    await migratePostgres(sql, { module: "orders", schema, migrations: [] });
    table = new OutboxTable({ queryRaw: async (text, params = []) => [...(await sql.unsafe(numbered(text), params as never[]))] as never }, schema, quiet);
  });
  afterAll(async () => {
    await sql.end({ timeout: 0 });
    await dropPg(admin, [schema], [schema]);
    await admin.end();
  });

  const numbered = (text: string) => {
    let n = 0;
    return text.replace(/\?/g, () => `$${++n}`);
  };
  const insert = (tx: Sql, aggregate: string) =>
    tx`INSERT INTO selaras_outbox (event_id, aggregate_id, type, payload, headers, created_at)
       VALUES (${newId()}, ${aggregate}, 'orders.v1.OrderCreated', ${new Uint8Array([1])}, '{}', ${Date.now()}) RETURNING seq::float8 AS seq`;

  it("the barrier waits for an outbox writer that holds the module's outbox lock, and sees its rows afterwards", async () => {
    let commit!: () => void;
    const mayCommit = new Promise<void>((r) => (commit = r));
    let inserted!: (seq: number) => void;
    const seqOf = new Promise<number>((r) => (inserted = r));
    const writer = sql.begin(async (tx) => {
      const [r] = await insert(tx as unknown as Sql, "agg-1");
      inserted((r as { seq: number }).seq);
      await mayCommit;
    });
    const seq = await seqOf;
    let passed = false;
    const barrier = table.visibilityBarrier().then(() => (passed = true));
    await waitFor(async () => (await admin`SELECT 1 FROM pg_stat_activity WHERE usename = ${schema} AND wait_event = 'advisory'`).length > 0, { what: "the barrier to wait" });
    expect(passed).toBe(false);
    commit();
    await Promise.all([writer, barrier]);
    expect(await table.notYetPublished([row(seq)])).toHaveLength(1);
    await table.markPublished(seq, 5);
    expect(await table.notYetPublished([row(seq)])).toEqual([]);
    expect(await table.lastUnpublished()).toBeUndefined();
  });

  it("marks every unpublished row up to the given one; a streamed row that is not there (pruned) counts as published", async () => {
    const seqs: number[] = [];
    for (let i = 0; i < 4; i++) seqs.push(((await insert(sql, `agg-${i}`))[0] as { seq: number }).seq);
    expect((await table.unpublished(seqs[3]!, 10)).map((r) => r.seq)).toEqual(seqs);
    await table.markPublished(seqs[1]!, 7);
    expect((await table.unpublished(seqs[3]!, 10)).map((r) => r.seq)).toEqual(seqs.slice(2));
    await sql`DELETE FROM selaras_outbox WHERE seq = ${seqs[0]!}`; // pruned
    expect((await table.notYetPublished(seqs.map(row))).map((r) => r.seq)).toEqual(seqs.slice(2));
    expect(await table.lastUnpublished()).toBe(seqs[3]);
    expect(await table.isUnpublished(seqs[3]!)).toBe(true);
    await table.markPublished(seqs[3]!, 8);
    expect(await table.isUnpublished(seqs[3]!)).toBe(false);
    expect(await table.maxSeq()).toBe(seqs[3]);
  });
});
