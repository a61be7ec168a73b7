import type { BusPosition } from "../bus/types.ts";
import type { Dialect } from "../storage/statements.ts";

/** What a rebuild did, kept in the read model's storage (`selaras_read_models`, one row per consumer). */
export interface RebuildRecord {
  readonly consumer: string;
  /** When the rebuild finished (ms). */
  readonly rebuiltAt: number;
  /** A point-in-time copy: the moment it shows (ms); null for a rebuild that was swapped in. */
  readonly untilAt: number | null;
  /** Events applied. */
  readonly events: number;
  /** Events whose handler kept failing (the live consumer dead-letters those too). */
  readonly skipped: number;
  /** The bus position the copy was built up to: the live consumer's checkpoint at the swap. */
  readonly checkpoint: BusPosition;
  readonly durationMs: number;
}

/**
 * The platform's bookkeeping table of rebuilds, created on first use in the storage a rebuild
 * writes to (the live one at a swap, the copy for a point-in-time rebuild).
 */
export function recordTableSql(dialect: Dialect): string {
  const int = dialect === "postgres" ? "bigint" : "INTEGER";
  return `CREATE TABLE IF NOT EXISTS selaras_read_models (
  consumer text PRIMARY KEY,
  rebuilt_at ${int} NOT NULL,
  until_at ${int},
  events ${int} NOT NULL,
  skipped ${int} NOT NULL,
  checkpoint text NOT NULL,
  duration_ms ${int} NOT NULL
)`;
}

/** Upserts a record; `?` placeholders (numbered for Postgres by the caller), in `recordValues` order. */
export const RECORD_UPSERT = `INSERT INTO selaras_read_models (consumer, rebuilt_at, until_at, events, skipped, checkpoint, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (consumer) DO UPDATE SET rebuilt_at = excluded.rebuilt_at, until_at = excluded.until_at, events = excluded.events,
  skipped = excluded.skipped, checkpoint = excluded.checkpoint, duration_ms = excluded.duration_ms`;

export function recordValues(r: RebuildRecord): unknown[] {
  return [r.consumer, r.rebuiltAt, r.untilAt, r.events, r.skipped, JSON.stringify(r.checkpoint), r.durationMs];
}

/** `?` placeholders as `$1, $2, …`. */
export function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** A stored record, or undefined when the table or the row does not exist. */
export async function readRecord(storage: { queryRaw<R>(sql: string, params?: readonly unknown[]): Promise<R[]> }, consumer: string): Promise<RebuildRecord | undefined> {
  let rows: Array<Record<string, unknown>>;
  try {
    rows = await storage.queryRaw("SELECT * FROM selaras_read_models WHERE consumer = ?", [consumer]);
  } catch {
    return undefined; // no rebuild yet: the table does not exist
  }
  const r = rows[0];
  if (!r) return undefined;
  return {
    consumer: String(r.consumer),
    rebuiltAt: Number(r.rebuilt_at),
    untilAt: r.until_at === null ? null : Number(r.until_at),
    events: Number(r.events),
    skipped: Number(r.skipped),
    checkpoint: JSON.parse(String(r.checkpoint)) as BusPosition,
    durationMs: Number(r.duration_ms),
  };
}
