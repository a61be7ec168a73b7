import type { ModuleStorage } from "../../../platform/module.ts";
import { idempotencyStore } from "../db/store.ts";

/** Forgets idempotency keys first used before `before` (ms). */
export function expireIdempotencyKeys(storage: ModuleStorage, before: number): Promise<void> {
  return storage.transact((tx) => idempotencyStore.deleteOlderThan(tx, before));
}
