import type { Sql, TransactionSql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../ids.ts";
import { dropPg, pgConnect, pgOptions, randomPgPrefix } from "../../../test/support/postgres.ts";
import { waitFor } from "../../../test/support/platform.ts";
import { migratePostgres } from "./migrate.ts";
import { moduleSchemaName, provisionModules } from "./provision.ts";
import { acquireRelayLease, listenForOutbox, RelayLeaseLost, type RelayLease } from "./relay-claim.ts";

// Integration: the shared Postgres. Creates one schema and role `t_<random>_orders`, drops them.
// The lease runs on the module pool's client: postgres.js, and Bun.sql under Bun.
const clients: Array<"postgres.js" | "bun"> = typeof Bun !== "undefined" ? ["postgres.js", "bun"] : ["postgres.js"];

describe.each(clients)("Postgres outbox relay on %s: leadership, order, wake-up", (client) => {
  const schema = moduleSchemaName(randomPgPrefix(), "orders");
  let admin: Sql;
  let sql: Sql; // as the module's role
  const leases: RelayLease[] = [];

  beforeAll(async () => {
    admin = pgConnect();
    await provisionModules(admin, [{ module: "orders", schema, role: schema, database: "test" }]);
    sql = pgConnect(schema);
    await migratePostgres(sql, { module: "orders", schema, migrations: [] });
  });
  afterAll(async () => {
    await Promise.all(leases.map((l) => l.release()));
    await sql.end({ timeout: 0 });
    await dropPg(admin, [schema], [schema]);
    await admin.end();
  });

  const claim = async (opts: { signal?: AbortSignal; markDelayMs?: number } = {}) => {
    const lease = await acquireRelayLease(pgOptions(schema), schema, { retryMs: 20, client, ...opts });
    if (lease) leases.push(lease);
    return lease;
  };
  const insert = (tx: Sql | TransactionSql, aggregate: string) =>
    tx`INSERT INTO selaras_outbox (event_id, aggregate_id, type, payload, headers, created_at)
       VALUES (${newId()}, ${aggregate}, 'orders.v1.OrderCreated', ${new Uint8Array([1, 2])}, '{}', ${Date.now()})`;
  const unpublished = () => sql<{ aggregate_id: string }[]>`SELECT aggregate_id FROM selaras_outbox WHERE published_at IS NULL ORDER BY seq`;
  const publishedAt = async (aggregates: string[]) =>
    (await sql<{ at: string }[]>`SELECT published_at::text AS at FROM selaras_outbox WHERE aggregate_id IN ${sql(aggregates)} ORDER BY seq`).map((r) => Number(r.at));
  const holders = async () =>
    (await admin<{ pid: number }[]>`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
      AND classid = hashtext('selaras.relay')::oid AND objid = hashtext(${schema})::oid`).map((r) => r.pid);

  it("reads unpublished rows in commit order: a later writer cannot commit first", async () => {
    const a = (await claim())!;
    let releaseFirst!: () => void;
    const firstMayCommit = new Promise<void>((r) => (releaseFirst = r));
    let firstInserted!: () => void;
    const inserted = new Promise<void>((r) => (firstInserted = r));
    const first = sql.begin(async (tx) => {
      await insert(tx, "agg-1");
      firstInserted();
      await firstMayCommit;
    });
    await inserted;
    const second = sql.begin(async (tx) => {
      await insert(tx, "agg-1");
      await insert(tx, "agg-2");
    });
    // The second writer waits on the outbox's advisory lock before its rows get a seq.
    await waitFor(async () => (await admin`SELECT 1 FROM pg_stat_activity WHERE usename = ${schema} AND wait_event = 'advisory'`).length > 0, { what: "the second writer to wait" });
    expect(await a.readUnpublished(10)).toEqual([]);
    releaseFirst();
    await Promise.all([first, second]);

    const rows = await a.readUnpublished(10);
    expect(rows.map((r) => r.aggregate_id)).toEqual(["agg-1", "agg-1", "agg-2"]);
    expect(rows.map((r) => r.seq)).toEqual([...rows.map((r) => r.seq)].sort((x, y) => x - y));
    expect(rows[0]).toMatchObject({ type: "orders.v1.OrderCreated", headers: "{}", payload: new Uint8Array([1, 2]) });
    expect(typeof rows[0]!.created_at).toBe("number");

    expect(await a.markPublished(rows[1]!.seq, Date.now())).toEqual([]);
    expect((await a.readUnpublished(10)).map((r) => r.seq)).toEqual([rows[2]!.seq]);
    expect(await a.markPublished(rows[2]!.seq, Date.now())).toEqual([]);
    expect(await a.readUnpublished(10)).toEqual([]);
    await a.release();
  });

  it("holds its marks for its reads at once and writes them together later, each row with the time of the first mark covering it", async () => {
    const a = (await claim({ markDelayMs: 600_000 }))!; // nothing written but by flush
    await sql.begin(async (tx) => {
      for (const agg of ["m-1", "m-2", "m-3", "m-4", "m-5"]) await insert(tx, agg);
    });
    const rows = await a.readUnpublished(2);
    expect(rows.map((r) => r.aggregate_id)).toEqual(["m-1", "m-2"]);
    const next = await a.markPublished(rows[1]!.seq, 1_000, 2);
    expect(next.map((r) => r.aggregate_id)).toEqual(["m-3", "m-4"]);
    expect(next[0]).toMatchObject({ type: "orders.v1.OrderCreated", headers: "{}", payload: new Uint8Array([1, 2]) });
    expect((await a.markPublished(next[0]!.seq, 2_000, 10)).map((r) => r.aggregate_id)).toEqual(["m-4", "m-5"]);
    expect(await a.markPublished(rows[1]!.seq, 9_000, 10)).toHaveLength(2); // an older seq: no new mark
    expect(await a.markPublished(next[1]!.seq + 1, 3_000, 10)).toEqual([]);
    expect(a.markedUpTo).toBe(next[1]!.seq + 1);
    expect((await unpublished()).map((r) => r.aggregate_id)).toEqual(["m-1", "m-2", "m-3", "m-4", "m-5"]);
    expect(await a.flush()).toBe(5);
    expect(await publishedAt(["m-1", "m-2", "m-3", "m-4", "m-5"])).toEqual([1_000, 1_000, 2_000, 3_000, 3_000]);
    expect(await a.flush()).toBe(0);
    await a.release();
  });

  it("writes held marks on its own after markDelayMs", async () => {
    const a = (await claim({ markDelayMs: 20 }))!;
    await insert(sql, "t-1");
    const [row] = await a.readUnpublished(10);
    await a.markPublished(row!.seq, Date.now());
    await waitFor(async () => (await unpublished()).length === 0, { what: "the held mark written" });
    await a.release();
  });

  it("writes its held marks when released: the next leader does not publish those rows again", async () => {
    const a = (await claim({ markDelayMs: 600_000 }))!;
    await sql.begin(async (tx) => {
      for (const agg of ["r-1", "r-2", "r-3"]) await insert(tx, agg);
    });
    const rows = await a.readUnpublished(10);
    await a.markPublished(rows[1]!.seq, Date.now());
    expect((await unpublished()).map((r) => r.aggregate_id)).toEqual(["r-1", "r-2", "r-3"]);
    await a.release();
    const b = (await claim())!;
    expect((await b.readUnpublished(10)).map((r) => r.aggregate_id)).toEqual(["r-3"]);
    await b.markPublished(rows[2]!.seq, Date.now());
    await b.release();
  });

  it("one relay instance leads; a standby takes over when the leader's connection ends", async () => {
    const a = (await claim())!;
    const standby = new AbortController();
    let bLease: RelayLease | undefined;
    const b = claim({ signal: standby.signal }).then((l) => (bLease = l));
    const aPid = (await holders())[0];
    expect(await holders()).toHaveLength(1);
    await waitFor(async () => (await admin`SELECT 1 FROM pg_stat_activity WHERE usename = ${schema} AND query LIKE '%pg_try_advisory_lock%' AND pid <> ${aPid!}`).length > 0, { what: "the standby to try" });
    expect(bLease).toBeUndefined();

    // The leader's process dies: the server ends its session and with it the lock.
    await admin`SELECT pg_terminate_backend(${aPid!})`;
    await b;
    expect(bLease).toBeDefined();
    expect(await holders()).toHaveLength(1);
    expect((await holders())[0]).not.toBe(aPid);
    await expect(a.readUnpublished(10)).rejects.toBeInstanceOf(RelayLeaseLost);
    await expect(a.markPublished(1, Date.now())).rejects.toBeInstanceOf(RelayLeaseLost);

    // A clean hand-over: release, and the next standby gets it.
    const c = claim();
    await bLease!.release();
    expect(await c).toBeDefined();
    await (await c)!.release();
    expect(await holders()).toEqual([]);
  });

  it("a standby's wait can be aborted", async () => {
    const a = (await claim())!;
    const ac = new AbortController();
    const b = claim({ signal: ac.signal });
    ac.abort();
    expect(await b).toBeUndefined();
    await a.release();
  });

  it("a commit with events wakes a listener within milliseconds; a rollback does not", async () => {
    let wakes = 0;
    const stop = await listenForOutbox(sql, schema, () => wakes++);
    try {
      await waitFor(() => wakes >= 1, { what: "the wake-up on listen" }); // (re)connect wakes too
      const before = wakes;
      await sql.begin(async (tx) => {
        await insert(tx, "agg-rolled-back");
        await tx`SELECT 1`;
        throw new Error("roll back");
      }).catch(() => undefined);
      const t0 = Date.now();
      await sql.begin(async (tx) => {
        await insert(tx, "agg-3");
        await insert(tx, "agg-4");
      });
      await waitFor(() => wakes > before, { what: "the NOTIFY after commit", timeoutMs: 2000 });
      expect(Date.now() - t0).toBeLessThan(500);
      expect(wakes).toBe(before + 1); // one per transaction, not per row; none for the rollback
    } finally {
      await stop();
    }
  });
});
