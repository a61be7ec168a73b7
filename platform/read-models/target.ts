import type { PlatformStorage } from "../storage/module-storage.ts";
import type { RebuildRecord } from "./record.ts";

/**
 * Where a read model is rebuilt: a second storage of its module, migrated with the same
 * migrations, so the module's handlers and statements run against it unchanged.
 */
export interface RebuildTarget {
  readonly storage: PlatformStorage;
  /** Where the copy lives, for people: a file or a schema. */
  readonly location: string;
  /**
   * Replaces the live storage's read-model tables with the copy's in one transaction that also
   * records the rebuild; readers see the old tables or the new ones, never neither. The copy is
   * gone afterwards.
   */
  swapInto(live: PlatformStorage, tables: readonly string[], record: RebuildRecord): Promise<void>;
  /** Records the rebuild in the copy itself and closes it, kept for inspection (point in time). */
  keep(record: RebuildRecord): Promise<void>;
  /** Closes the copy and deletes it. */
  discard(): Promise<void>;
}

/** Quotes an SQL identifier (both dialects). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
