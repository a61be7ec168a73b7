import { Code } from "@connectrpc/connect";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { WriteConflict } from "../../../platform/storage/statements.ts";
import { toRow, type StockStreams } from "../db/stock-streams.ts";
import type { StockRow } from "../db/store.ts";
import { decideRestock, StockLimitExceeded } from "../domain/stock.ts";
import type { RestockInput } from "./inputs.ts";

// As many as the platform gives an event handler: each conflict is another writer's commit, and
// the saga may commit a burst of reservations on a popular product.
const MAX_ATTEMPTS = 20;

/** Adds units to a product's stock; resolves with the stock after it. */
export type Restock = (input: RestockInput) => Promise<StockRow>;

/**
 * Restock: load the product's stream, append StockRestocked after the version loaded, update the
 * projection — one transaction. Restocks of one product in this process run one after the
 * other, so they never conflict with each other; a conflict with the saga or another process
 * loads again (each conflict means another append committed, so retries make progress).
 * @example const restock = restocker(storage, streams); await restock({ productId, quantity: 5 });
 */
export function restocker(storage: ModuleStorage, streams: StockStreams): Restock {
  const tails = new Map<string, Promise<unknown>>();
  return (input) => {
    const run = (tails.get(input.productId) ?? Promise.resolve()).then(() => restock(storage, streams, input));
    const tail = run.catch(() => {});
    tails.set(input.productId, tail);
    void tail.then(() => {
      if (tails.get(input.productId) === tail) tails.delete(input.productId);
    });
    return run;
  };
}

async function restock(storage: ModuleStorage, streams: StockStreams, { productId, quantity }: RestockInput): Promise<StockRow> {
  for (let attempt = 1; ; attempt++) {
    const loaded = await streams.load(productId);
    let event;
    try {
      event = decideRestock(loaded.state, quantity);
    } catch (err) {
      if (err instanceof StockLimitExceeded) throw domainError(Code.FailedPrecondition, "stock-limit", err.message, "inventory", { productId });
      throw err;
    }
    try {
      return await storage.transact((tx) => toRow(streams.append(tx, loaded, [event])));
    } catch (err) {
      if (!(err instanceof WriteConflict)) throw err;
      if (attempt >= MAX_ATTEMPTS) {
        throw domainError(Code.Aborted, "concurrent-update", `product ${productId}'s stock changed concurrently ${MAX_ATTEMPTS} times in a row; try again`, "inventory", { productId });
      }
    }
  }
}
