import { asc, eq, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor } from "../../../platform/storage/statements.ts";
import type { Notification, NotificationKind } from "../domain/notification.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
// The primary key (order_id, kind) decides: a second message for the same outcome is dropped.
const insert = q.write((db, t) =>
  db
    .insert(t.notifications)
    .values({ orderId: p("orderId"), kind: p("kind"), customerId: p("customerId"), message: p("message"), createdAt: p("createdAt") })
    .onConflictDoNothing(),
);
const ofCustomer = q.read<Notification>((db, t) =>
  db
    .select({
      orderId: t.notifications.orderId,
      customerId: t.notifications.customerId,
      kind: sql<NotificationKind>`${t.notifications.kind}`,
      message: t.notifications.message,
      createdAt: t.notifications.createdAt,
    })
    .from(t.notifications)
    .where(eq(t.notifications.customerId, p("customerId")))
    .orderBy(asc(t.notifications.createdAt), asc(t.notifications.orderId), asc(t.notifications.kind)),
);

/** The notifications table. Writes take the transaction, reads the storage. */
export const notificationStore = {
  /** Records `n` unless its order already has a notification of its kind (then nothing happens). */
  record(tx: Tx, n: Notification): void {
    tx.write(insert, { ...n });
  },

  /** A customer's notifications, oldest first (ties by order id, then kind). */
  ofCustomer(storage: ModuleStorage, customerId: string): Promise<Notification[]> {
    return storage.read(ofCustomer, { customerId });
  },
};
