import type { ModuleStorage } from "../../../platform/module.ts";
import { idempotencyStore } from "../db/store.ts";

/** Forgets idempotency keys first used before `before` (ms); returns how many. */
export function expireIdempotencyKeys(storage: ModuleStorage, before: number): Promise<number> {
  return storage.transact((tx) => idempotencyStore.deleteOlderThan(tx.db, before));
}
