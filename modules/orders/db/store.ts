import { asc, eq } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import type { Order } from "../domain/order.ts";
import { idempotencyKeys, orderLines, orders } from "./schema.ts";

/** An idempotency key as stored. */
export interface IdempotencyRecord {
  readonly key: string;
  readonly requestHash: string;
  readonly orderId: string;
  readonly createdAt: number;
}

/** Reads and writes of the orders tables. Writes take the transaction's db. */
export const orderStore = {
  byId(db: SqliteDb, id: string): Order | undefined {
    const row = db.select().from(orders).where(eq(orders.id, id)).get();
    if (!row) return undefined;
    const lines = db
      .select({ productId: orderLines.productId, quantity: orderLines.quantity, unitPriceCents: orderLines.unitPriceCents, lineTotalCents: orderLines.lineTotalCents })
      .from(orderLines)
      .where(eq(orderLines.orderId, id))
      .orderBy(asc(orderLines.lineNo))
      .all();
    return { ...row, lines };
  },
  insert(db: SqliteDb, o: Order): void {
    const { lines, ...row } = o;
    db.insert(orders).values(row).run();
    db.insert(orderLines).values(lines.map((l, lineNo) => ({ orderId: o.id, lineNo, ...l }))).run();
  },
};

/** The idempotency keys table. */
export const idempotencyStore = {
  byKey(db: SqliteDb, key: string): IdempotencyRecord | undefined {
    return db.select().from(idempotencyKeys).where(eq(idempotencyKeys.key, key)).get();
  },
  insert(db: SqliteDb, r: IdempotencyRecord): void {
    db.insert(idempotencyKeys).values(r).run();
  },
};
