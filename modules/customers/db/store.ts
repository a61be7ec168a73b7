import { eq, sql } from "drizzle-orm";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { statementsFor, type WriteChecks } from "../../../platform/storage/statements.ts";
import type { Customer } from "../domain/customer.ts";
import * as postgres from "./schema.pg.ts";
import * as sqlite from "./schema.ts";

const p = sql.placeholder;
const q = statementsFor({ sqlite, postgres });
const byId = q.read<Customer>((db, t) => db.select().from(t.customers).where(eq(t.customers.id, p("id"))));
const insert = q.write((db, t) =>
  db.insert(t.customers).values({ id: p("id"), email: p("email"), name: p("name"), creditLimitCents: p("creditLimitCents"), createdAt: p("createdAt") }),
);

/** Reads and writes of the customers table. Reads take the storage, writes the transaction. */
export const customerStore = {
  async byId(storage: ModuleStorage, id: string): Promise<Customer | undefined> {
    return (await storage.read(byId, { id }))[0];
  },
  /** `c.email` must already be normalised (`normalizeEmail`): the unique column holds only that form. `checks.ifDuplicate`: the email is taken. */
  insert(tx: Tx, c: Customer, checks?: WriteChecks): void {
    tx.write(insert, { ...c }, checks);
  },
};
