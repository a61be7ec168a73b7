import { uuidv7 } from "uuidv7";

/**
 * A new time-ordered id (UUIDv7). Used for every primary key and event id: random UUIDv4 keys
 * make batched SQLite writes 3–4× slower because inserts land all over the B-tree.
 * @example const id = newId(); // "0193a5c2-7e4b-7c1d-9a3e-…"
 */
export function newId(): string {
  return uuidv7();
}
