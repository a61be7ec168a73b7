import { and, asc, eq, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor, WriteConflict } from "../../../platform/storage/statements.ts";
import type { Line, Reservation, ReservationStatus } from "../domain/reservation.ts";
import type { Stock } from "../domain/stock.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

/** A row of the stock projection: a product's stock at a stream version. */
export interface StockRow extends Stock {
  readonly productId: string;
  readonly version: number;
}

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const stockById = q.read<StockRow>((db, t) => db.select().from(t.stock).where(eq(t.stock.productId, p("productId"))));
const allStock = q.read<StockRow>((db, t) => db.select().from(t.stock).orderBy(asc(t.stock.productId)));
// Only ever forward: the same transaction appended `version` to the stream, so it is the newest.
const putStock = q.write((db, t) =>
  db
    .insert(t.stock)
    .values({ productId: p("productId"), available: p("available"), reserved: p("reserved"), restocked: p("restocked"), version: p("version") })
    .onConflictDoUpdate({
      target: t.stock.productId,
      set: { available: sql`excluded.available`, reserved: sql`excluded.reserved`, restocked: sql`excluded.restocked`, version: sql`excluded.version` },
      setWhere: sql`excluded.version > ${t.stock.version}`,
    }),
);
const reservationById = q.read<{ orderId: string; status: string; lines: string }>((db, t) =>
  db.select({ orderId: t.reservations.orderId, status: t.reservations.status, lines: t.reservations.lines }).from(t.reservations).where(eq(t.reservations.orderId, p("orderId"))),
);
const insertReservation = q.write((db, t) => db.insert(t.reservations).values({ orderId: p("orderId"), status: p("status"), lines: p("lines"), updatedAt: p("updatedAt") }));
const releaseReservation = q.write((db, t) =>
  db
    .update(t.reservations)
    .set({ status: sql`'RELEASED'`, updatedAt: sql`${p("updatedAt")}` })
    .where(and(eq(t.reservations.orderId, p("orderId")), eq(t.reservations.status, "RESERVED"))),
);

/** The stock projection: reads for queries, one upsert per append. */
export const stockStore = {
  async byId(storage: ModuleStorage, productId: string): Promise<StockRow | undefined> {
    return (await storage.read(stockById, { productId }))[0];
  },
  all(storage: ModuleStorage): Promise<StockRow[]> {
    return storage.read(allStock);
  },
  /** Writes the product's stock as of stream `version`, in the transaction of that append. */
  put(tx: Tx, row: StockRow): void {
    tx.write(putStock, { ...row });
  },
};

/** What was decided per order. Inserts and the RESERVED -> RELEASED change are checked, so a concurrent decision for the same order loses with `WriteConflict` (and is loaded and decided again). */
export const reservationStore = {
  async byId(storage: ModuleStorage, orderId: string): Promise<Reservation | undefined> {
    const [row] = await storage.read(reservationById, { orderId });
    return row && { orderId: row.orderId, status: row.status as ReservationStatus, lines: JSON.parse(row.lines) as Line[] };
  },
  insert(tx: Tx, r: Reservation, now: number): void {
    tx.write(
      insertReservation,
      { orderId: r.orderId, status: r.status, lines: JSON.stringify(r.lines), updatedAt: now },
      { ifDuplicate: () => new WriteConflict(`order ${r.orderId} was decided concurrently`) },
    );
  },
  release(tx: Tx, orderId: string, now: number): void {
    tx.write(releaseReservation, { orderId, updatedAt: now }, { ifUnchanged: () => new WriteConflict(`order ${orderId} was released concurrently`) });
  },
};
