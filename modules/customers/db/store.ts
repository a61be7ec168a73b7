import { eq, sql } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import { preparedQuery } from "../../../platform/storage/prepared.ts";
import type { Customer } from "../domain/customer.ts";
import { customers } from "./schema.ts";

const p = sql.placeholder;
const byId = preparedQuery((db) => db.select().from(customers).where(eq(customers.id, p("id"))).prepare());
const byEmail = preparedQuery((db) => db.select().from(customers).where(eq(customers.email, p("email"))).prepare());
const insert = preparedQuery((db) =>
  db.insert(customers).values({ id: p("id"), email: p("email"), name: p("name"), creditLimitCents: p("creditLimitCents"), createdAt: p("createdAt") }).prepare(),
);

/** Reads and writes of the customers table. Writes take the transaction's db. */
export const customerStore = {
  byId(db: SqliteDb, id: string): Customer | undefined {
    return byId(db).get({ id });
  },
  /** `email` must already be normalised (`normalizeEmail`): the column holds only that form. */
  byEmail(db: SqliteDb, email: string): Customer | undefined {
    return byEmail(db).get({ email });
  },
  insert(db: SqliteDb, c: Customer): void {
    insert(db).run({ ...c });
  },
};
