import { and, asc, count, eq, inArray, isNotNull, lt, lte, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor, WriteConflict } from "../../../platform/storage/statements.ts";
import type { Saga, SagaState } from "../domain/saga.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

type SagaRow = Omit<Saga, "refundPending" | "releasePending" | "deadlineAt"> & { refundPending: number; releasePending: number; deadlineAt: number | null };

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const columns = (t: typeof sqlite) => ({
  orderId: t.sagas.orderId,
  state: t.sagas.state,
  reason: t.sagas.reason,
  deadlineAt: t.sagas.deadlineAt,
  refundPending: t.sagas.refundPending,
  releasePending: t.sagas.releasePending,
  attempts: t.sagas.attempts,
  version: t.sagas.version,
});
const byOrder = q.read<SagaRow>((db, t) => db.select(columns(t)).from(t.sagas).where(eq(t.sagas.orderId, p("orderId"))));
const due = q.read<SagaRow>((db, t) =>
  db.select(columns(t)).from(t.sagas).where(and(isNotNull(t.sagas.deadlineAt), lte(t.sagas.deadlineAt, p("now")))).orderBy(asc(t.sagas.deadlineAt)).limit(p("limit")),
);
const overdue = q.read<{ orderId: string }>((db, t) =>
  db.select({ orderId: t.sagas.orderId }).from(t.sagas).where(and(isNotNull(t.sagas.deadlineAt), lt(t.sagas.deadlineAt, p("before")))).orderBy(asc(t.sagas.deadlineAt)).limit(p("limit")),
);
const overdueCount = q.read<{ n: number }>((db, t) => db.select({ n: count() }).from(t.sagas).where(and(isNotNull(t.sagas.deadlineAt), lt(t.sagas.deadlineAt, p("before")))));
const byState = q.read<{ state: SagaState; n: number }>((db, t) => db.select({ state: t.sagas.state, n: count() }).from(t.sagas).groupBy(t.sagas.state));
const activeByState = q.read<{ state: SagaState; n: number }>((db, t) =>
  db
    .select({ state: t.sagas.state, n: count() })
    .from(t.sagas)
    .where(inArray(t.sagas.state, ["AWAITING_PAYMENT", "AWAITING_STOCK", "COMPENSATING", "STUCK"]))
    .groupBy(t.sagas.state),
);
const historyOf = q.read<{ version: number; at: number; state: SagaState; note: string }>((db, t) =>
  db
    .select({ version: t.sagaHistory.version, at: t.sagaHistory.at, state: t.sagaHistory.state, note: t.sagaHistory.note })
    .from(t.sagaHistory)
    .where(eq(t.sagaHistory.orderId, p("orderId")))
    .orderBy(asc(t.sagaHistory.version)),
);
const insert = q.write((db, t) =>
  db.insert(t.sagas).values({
    orderId: p("orderId"),
    state: p("state"),
    reason: p("reason"),
    deadlineAt: p("deadlineAt"),
    refundPending: p("refundPending"),
    releasePending: p("releasePending"),
    attempts: p("attempts"),
    version: p("version"),
    updatedAt: p("updatedAt"),
  }),
);
// Optimistic concurrency: a transition applies only to the version it was decided from.
const update = q.write((db, t) =>
  db
    .update(t.sagas)
    .set({
      state: sql`${p("state")}`,
      reason: sql`${p("reason")}`,
      deadlineAt: sql`${p("deadlineAt")}`,
      refundPending: sql`${p("refundPending")}`,
      releasePending: sql`${p("releasePending")}`,
      attempts: sql`${p("attempts")}`,
      version: sql`${p("version")}`,
      updatedAt: sql`${p("updatedAt")}`,
    })
    .where(and(eq(t.sagas.orderId, p("orderId")), eq(t.sagas.version, p("expectedVersion")))),
);
const addHistory = q.write((db, t) => db.insert(t.sagaHistory).values({ orderId: p("orderId"), version: p("version"), at: p("at"), state: p("state"), note: p("note") }));

const fromRow = (r: SagaRow): Saga => ({ ...r, refundPending: r.refundPending === 1, releasePending: r.releasePending === 1, deadlineAt: r.deadlineAt ?? undefined });
const toValues = (s: Saga, now: number) => ({
  ...s,
  deadlineAt: s.deadlineAt ?? null,
  refundPending: s.refundPending ? 1 : 0,
  releasePending: s.releasePending ? 1 : 0,
  updatedAt: now,
});

/** The sagas table and its history. Reads take the storage, writes the transaction. */
export const sagaStore = {
  async byOrder(storage: ModuleStorage, orderId: string): Promise<Saga | undefined> {
    const [row] = await storage.read(byOrder, { orderId });
    return row && fromRow(row);
  },
  /** Sagas whose deadline has come, earliest first. */
  async due(storage: ModuleStorage, now: number, limit: number): Promise<Saga[]> {
    return (await storage.read(due, { now, limit })).map(fromRow);
  },
  history(storage: ModuleStorage, orderId: string) {
    return storage.read(historyOf, { orderId });
  },
  /** Sagas per state, all of them (a full scan: for the invariant checker). */
  async countByState(storage: ModuleStorage): Promise<Map<SagaState, number>> {
    return new Map((await storage.read(byState)).map((r) => [r.state, Number(r.n)]));
  },
  /** Sagas per state that are not done (for the metrics gauge). */
  async countActive(storage: ModuleStorage): Promise<Map<SagaState, number>> {
    return new Map((await storage.read(activeByState)).map((r) => [r.state, Number(r.n)]));
  },
  /** Sagas not done whose deadline is before `before`: how many, and the first `limit` ids. */
  async overdue(storage: ModuleStorage, before: number, limit: number): Promise<{ count: number; orderIds: string[] }> {
    const [n] = await storage.read(overdueCount, { before });
    return { count: Number(n?.n ?? 0), orderIds: (await storage.read(overdue, { before, limit })).map((r) => r.orderId) };
  },
  /** A new saga and its first history entry, in the order's transaction. */
  insert(tx: Tx, s: Saga, now: number, note: string): void {
    tx.write(insert, toValues(s, now));
    tx.write(addHistory, { orderId: s.orderId, version: s.version, at: now, state: s.state, note });
  },
  /** Moves `from` to `to`; fails the body with WriteConflict if the saga moved meanwhile. */
  transition(tx: Tx, from: Saga, to: Saga, now: number, note: string): void {
    tx.write(update, { ...toValues(to, now), expectedVersion: from.version }, { ifUnchanged: () => new WriteConflict(`saga of order ${from.orderId} moved past version ${from.version}`) });
    tx.write(addHistory, { orderId: to.orderId, version: to.version, at: now, state: to.state, note });
  },
};
