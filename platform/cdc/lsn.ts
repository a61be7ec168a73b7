/**
 * A WAL position (log sequence number): a 64-bit byte offset into the server's WAL, written by
 * Postgres as two hex halves, `16/B374D848`.
 */
export type Lsn = bigint;

/**
 * Parses Postgres' text form of an LSN.
 * @example parseLsn("0/16B3748") === 0x16b3748n
 */
export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new Error(`not an LSN: ${text}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/**
 * Formats an LSN the way Postgres does (`pg_current_wal_lsn()`), so it compares by eye with
 * `pg_replication_slots`.
 * @example formatLsn(0x16b3748n) === "0/16B3748"
 */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The larger of two LSNs. */
export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
