import { asc, eq, lt, sql } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import { preparedQuery } from "../../../platform/storage/prepared.ts";
import type { Order } from "../domain/order.ts";
import { idempotencyKeys, orderLines, orders } from "./schema.ts";

/** An idempotency key as stored. */
export interface IdempotencyRecord {
  readonly key: string;
  readonly requestHash: string;
  readonly orderId: string;
  readonly createdAt: number;
}

const p = sql.placeholder;
const orderById = preparedQuery((db) => db.select().from(orders).where(eq(orders.id, p("id"))).prepare());
const linesOf = preparedQuery((db) =>
  db
    .select({ productId: orderLines.productId, quantity: orderLines.quantity, unitPriceCents: orderLines.unitPriceCents, lineTotalCents: orderLines.lineTotalCents })
    .from(orderLines)
    .where(eq(orderLines.orderId, p("id")))
    .orderBy(asc(orderLines.lineNo))
    .prepare(),
);
const insertOrder = preparedQuery((db) =>
  db
    .insert(orders)
    .values({ id: p("id"), customerId: p("customerId"), status: p("status"), totalCents: p("totalCents"), reason: p("reason"), createdAt: p("createdAt"), updatedAt: p("updatedAt") })
    .prepare(),
);
const insertLine = preparedQuery((db) =>
  db
    .insert(orderLines)
    .values({ orderId: p("orderId"), lineNo: p("lineNo"), productId: p("productId"), quantity: p("quantity"), unitPriceCents: p("unitPriceCents"), lineTotalCents: p("lineTotalCents") })
    .prepare(),
);
const keyByKey = preparedQuery((db) => db.select().from(idempotencyKeys).where(eq(idempotencyKeys.key, p("key"))).prepare());
const deleteKeysBefore = preparedQuery((db) => db.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, p("before"))).prepare());
const insertKey = preparedQuery((db) =>
  db.insert(idempotencyKeys).values({ key: p("key"), requestHash: p("requestHash"), orderId: p("orderId"), createdAt: p("createdAt") }).prepare(),
);

/** Reads and writes of the orders tables. Writes take the transaction's db. */
export const orderStore = {
  byId(db: SqliteDb, id: string): Order | undefined {
    const row = orderById(db).get({ id });
    if (!row) return undefined;
    return { ...row, lines: linesOf(db).all({ id }) };
  },
  insert(db: SqliteDb, o: Order): void {
    const { lines, ...row } = o;
    insertOrder(db).run({ ...row });
    const line = insertLine(db);
    lines.forEach((l, lineNo) => line.run({ orderId: o.id, lineNo, ...l }));
  },
};

/** The idempotency keys table. */
export const idempotencyStore = {
  byKey(db: SqliteDb, key: string): IdempotencyRecord | undefined {
    return keyByKey(db).get({ key });
  },
  insert(db: SqliteDb, r: IdempotencyRecord): void {
    insertKey(db).run({ ...r });
  },
  /** Deletes keys first used before `before` (ms); returns how many. */
  deleteOlderThan(db: SqliteDb, before: number): number {
    return (deleteKeysBefore(db).run({ before }) as { changes: number }).changes;
  },
};
