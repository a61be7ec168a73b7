import { and, eq, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor, type WriteChecks } from "../../../platform/storage/statements.ts";
import type { Account } from "../domain/account.ts";
import type { Payment, PaymentStatus } from "../domain/payment.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

/** Sums over every payment and account, read in one statement (one snapshot). */
export interface Totals {
  readonly capturedCents: number;
  readonly capturedCount: number;
  readonly creditUsedCents: number;
}

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });

const accountById = q.read<Account>((db, t) => db.select().from(t.accounts).where(eq(t.accounts.customerId, p("customerId"))));
const paymentById = q.read<Payment>((db, t) => db.select().from(t.payments).where(eq(t.payments.orderId, p("orderId"))));
const paymentsIn = q.read<Payment>((db, t) => db.select().from(t.payments).where(and(eq(t.payments.customerId, p("customerId")), eq(t.payments.status, p("status")))));
// An aggregate without GROUP BY yields one row even over no accounts; the payment sums ride along
// as scalar subqueries so all three come from one snapshot. Postgres sums bigints as numeric
// (a string on the wire), hence mapWith(Number).
const totals = q.read<Totals>((db, t) =>
  db
    .select({
      capturedCents: sql<number>`(SELECT coalesce(sum(amount_cents), 0) FROM ${t.payments} WHERE status = 'CAPTURED')`.mapWith(Number),
      capturedCount: sql<number>`(SELECT count(*) FROM ${t.payments} WHERE status = 'CAPTURED')`.mapWith(Number),
      creditUsedCents: sql<number>`coalesce(sum(${t.accounts.creditLimitCents} - ${t.accounts.availableCents}), 0)`.mapWith(Number),
    })
    .from(t.accounts),
);

const insertAccount = q.write((db, t) =>
  db.insert(t.accounts).values({
    customerId: p("customerId"),
    creditLimitCents: p("creditLimitCents"),
    availableCents: p("availableCents"),
    registeredAt: p("registeredAt"),
    version: p("version"),
    updatedAt: p("updatedAt"),
  }),
);
// Optimistic concurrency: applies only to the version the change was computed from.
const updateAccount = q.write((db, t) =>
  db
    .update(t.accounts)
    .set({
      creditLimitCents: sql`${p("creditLimitCents")}`,
      availableCents: sql`${p("availableCents")}`,
      registeredAt: sql`${p("registeredAt")}`,
      version: sql`${p("version")}`,
      updatedAt: sql`${p("updatedAt")}`,
    })
    .where(and(eq(t.accounts.customerId, p("customerId")), eq(t.accounts.version, p("expectedVersion")))),
);
const insertPayment = q.write((db, t) =>
  db.insert(t.payments).values({
    orderId: p("orderId"),
    customerId: p("customerId"),
    amountCents: p("amountCents"),
    status: p("status"),
    reason: p("reason"),
    createdAt: p("createdAt"),
    updatedAt: p("updatedAt"),
  }),
);
// A payment moves only out of the status it was decided from.
const updatePayment = q.write((db, t) =>
  db
    .update(t.payments)
    .set({ status: sql`${p("status")}`, reason: sql`${p("reason")}`, updatedAt: sql`${p("updatedAt")}` })
    .where(and(eq(t.payments.orderId, p("orderId")), eq(t.payments.status, p("expectedStatus")))),
);

/** Reads and writes of the payments module's tables. Reads take the storage, writes the transaction. */
export const paymentStore = {
  async account(storage: ModuleStorage, customerId: string): Promise<Account | undefined> {
    return (await storage.read(accountById, { customerId }))[0];
  },
  async payment(storage: ModuleStorage, orderId: string): Promise<Payment | undefined> {
    return (await storage.read(paymentById, { orderId }))[0];
  },
  /** A customer's payments in one status (e.g. the PENDING ones parked on an unregistered account). */
  paymentsIn(storage: ModuleStorage, customerId: string, status: PaymentStatus): Promise<Payment[]> {
    return storage.read(paymentsIn, { customerId, status });
  },
  async totals(storage: ModuleStorage): Promise<Totals> {
    return (await storage.read(totals))[0]!;
  },
  /** `checks.ifDuplicate`: the account exists already. */
  insertAccount(tx: Tx, a: Account, checks?: WriteChecks): void {
    tx.write(insertAccount, { ...a }, checks);
  },
  /** Writes `a` over the row still at `expectedVersion`; `checks.ifUnchanged`: another change got there first. */
  updateAccount(tx: Tx, a: Account, expectedVersion: number, checks?: WriteChecks): void {
    tx.write(updateAccount, { ...a, expectedVersion }, checks);
  },
  /** `checks.ifDuplicate`: the order has a payment already. */
  insertPayment(tx: Tx, payment: Payment, checks?: WriteChecks): void {
    tx.write(insertPayment, { ...payment }, checks);
  },
  /** Moves the payment to `payment.status` if it is still `expectedStatus`; `checks.ifUnchanged`: it is not. */
  updatePayment(tx: Tx, payment: Payment, expectedStatus: PaymentStatus, checks?: WriteChecks): void {
    tx.write(updatePayment, { orderId: payment.orderId, status: payment.status, reason: payment.reason, updatedAt: payment.updatedAt, expectedStatus }, checks);
  },
};
