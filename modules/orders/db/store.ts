import { asc, eq, lt, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor, type WriteChecks } from "../../../platform/storage/statements.ts";
import type { Order, OrderLine } from "../domain/order.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

/** An idempotency key as stored. */
export interface IdempotencyRecord {
  readonly key: string;
  readonly requestHash: string;
  readonly orderId: string;
  readonly createdAt: number;
}

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const orderById = q.read<Omit<Order, "lines">>((db, t) => db.select().from(t.orders).where(eq(t.orders.id, p("id"))));
const linesOf = q.read<OrderLine>((db, t) =>
  db
    .select({ productId: t.orderLines.productId, quantity: t.orderLines.quantity, unitPriceCents: t.orderLines.unitPriceCents, lineTotalCents: t.orderLines.lineTotalCents })
    .from(t.orderLines)
    .where(eq(t.orderLines.orderId, p("id")))
    .orderBy(asc(t.orderLines.lineNo)),
);
const insertOrder = q.write((db, t) =>
  db
    .insert(t.orders)
    .values({ id: p("id"), customerId: p("customerId"), status: p("status"), totalCents: p("totalCents"), reason: p("reason"), createdAt: p("createdAt"), updatedAt: p("updatedAt") }),
);
const insertLine = q.write((db, t) =>
  db
    .insert(t.orderLines)
    .values({ orderId: p("orderId"), lineNo: p("lineNo"), productId: p("productId"), quantity: p("quantity"), unitPriceCents: p("unitPriceCents"), lineTotalCents: p("lineTotalCents") }),
);
const setStatus = q.write((db, t) =>
  db
    .update(t.orders)
    .set({ status: sql`${p("status")}`, reason: sql`${p("reason")}`, updatedAt: sql`${p("updatedAt")}` })
    .where(eq(t.orders.id, p("id"))),
);
const confirmedTotal = q.read<{ total: number | null }>((db, t) =>
  db.select({ total: sql<number | null>`sum(${t.orders.totalCents})`.mapWith((v) => (v === null ? null : Number(v))) }).from(t.orders).where(eq(t.orders.status, "CONFIRMED")),
);
const keyByKey = q.read<IdempotencyRecord>((db, t) => db.select().from(t.idempotencyKeys).where(eq(t.idempotencyKeys.key, p("key"))));
const deleteKeysBefore = q.write((db, t) => db.delete(t.idempotencyKeys).where(lt(t.idempotencyKeys.createdAt, p("before"))));
const insertKey = q.write((db, t) =>
  db.insert(t.idempotencyKeys).values({ key: p("key"), requestHash: p("requestHash"), orderId: p("orderId"), createdAt: p("createdAt") }),
);

/** Reads and writes of the orders tables. Reads take the storage, writes the transaction. */
export const orderStore = {
  async byId(storage: ModuleStorage, id: string): Promise<Order | undefined> {
    const [row] = await storage.read(orderById, { id });
    if (!row) return undefined;
    return { ...row, lines: await storage.read(linesOf, { id }) };
  },
  /** Sets the final status (and the reason of a cancellation). */
  setStatus(tx: Tx, id: string, status: Order["status"], reason: string, now: number): void {
    tx.write(setStatus, { id, status, reason, updatedAt: now });
  },
  /** Sum of the totals of CONFIRMED orders, in cents (a full scan: for the invariant checker). */
  async confirmedTotal(storage: ModuleStorage): Promise<number> {
    const [row] = await storage.read(confirmedTotal);
    return Number(row?.total ?? 0);
  },
  insert(tx: Tx, o: Order): void {
    const { lines, ...row } = o;
    tx.write(insertOrder, { ...row });
    lines.forEach((l, lineNo) => tx.write(insertLine, { orderId: o.id, lineNo, ...l }));
  },
};

/** The idempotency keys table. */
export const idempotencyStore = {
  async byKey(storage: ModuleStorage, key: string): Promise<IdempotencyRecord | undefined> {
    return (await storage.read(keyByKey, { key }))[0];
  },
  /** `checks.ifDuplicate`: another request recorded the key first. */
  insert(tx: Tx, r: IdempotencyRecord, checks?: WriteChecks): void {
    tx.write(insertKey, { ...r }, checks);
  },
  /** Deletes keys first used before `before` (ms). */
  deleteOlderThan(tx: Tx, before: number): void {
    tx.write(deleteKeysBefore, { before });
  },
};
