import { eq } from "drizzle-orm";
import type { SqliteDb } from "../../../platform/module.ts";
import type { Customer } from "../domain/customer.ts";
import { customers } from "./schema.ts";

/** Reads and writes of the customers table. Writes take the transaction's db. */
export const customerStore = {
  byId(db: SqliteDb, id: string): Customer | undefined {
    return db.select().from(customers).where(eq(customers.id, id)).get();
  },
  /** `email` must already be normalised (`normalizeEmail`): the column holds only that form. */
  byEmail(db: SqliteDb, email: string): Customer | undefined {
    return db.select().from(customers).where(eq(customers.email, email)).get();
  },
  insert(db: SqliteDb, c: Customer): void {
    db.insert(customers).values(c).run();
  },
};
