import { uuidv7 } from "uuidv7";

/**
 * A new time-ordered id (UUIDv7). Used for every primary key and event id: random UUIDv4 keys
 * make batched SQLite writes 3–4× slower because inserts land all over the B-tree.
 * @example const id = newId(); // "0193a5c2-7e4b-7c1d-9a3e-…"
 */
export function newId(): string {
  return uuidv7();
}

/**
 * The smallest UUIDv7 of millisecond `ms`: every id made at or after `ms` sorts at or above it
 * (lower-case hex compares like the timestamps). Lets tables keyed by event id prune by age
 * through their primary key, without an extra time index.
 * @example db.run("DELETE FROM t WHERE event_id < ?", uuidv7Floor(Date.now() - ttl))
 */
export function uuidv7Floor(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}
