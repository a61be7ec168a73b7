/*
 * The streaming-replication sub-protocol carried in CopyData messages once START_REPLICATION
 * switched the connection to copy-both mode (PostgreSQL docs, "Streaming Replication Protocol").
 */
import type { Lsn } from "./lsn.ts";

/** Postgres timestamps count microseconds from 2000-01-01 UTC. */
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

/** A server message of the replication stream. */
export type ServerMessage =
  /** `w`: a chunk of output of the decoding plugin; `walStart` is the LSN it belongs to. */
  | { kind: "xlog"; walStart: Lsn; walEnd: Lsn; data: Buffer }
  /**
   * `k`: a keepalive. For a logical slot `walEnd` is how far the walsender has decoded: every
   * transaction committed before it has already been sent (or was not published).
   */
  | { kind: "keepalive"; walEnd: Lsn; replyRequested: boolean };

/** Parses one CopyData payload from the walsender; `undefined` for a kind it does not know. */
export function parseServerMessage(buf: Buffer): ServerMessage | undefined {
  if (buf[0] === 0x77 && buf.length >= 25) {
    return { kind: "xlog", walStart: buf.readBigUInt64BE(1), walEnd: buf.readBigUInt64BE(9), data: buf.subarray(25) };
  }
  if (buf[0] === 0x6b && buf.length >= 18) {
    return { kind: "keepalive", walEnd: buf.readBigUInt64BE(1), replyRequested: buf[17] === 1 };
  }
  return undefined;
}

/**
 * `r`, the standby status update. For a logical slot the server takes `flush` as the slot's new
 * `confirmed_flush_lsn` (WAL before it may be recycled, and a restart resumes there); `write`
 * and `apply` only show in `pg_stat_replication`. `replyRequested` asks for a keepalive back,
 * which both proves the connection alive and reports how far the walsender has decoded.
 */
export function standbyStatusUpdate(write: Lsn, flush: Lsn, apply: Lsn, replyRequested: boolean, nowMs = Date.now()): Buffer {
  const buf = Buffer.alloc(34);
  buf[0] = 0x72;
  buf.writeBigUInt64BE(write, 1);
  buf.writeBigUInt64BE(flush, 9);
  buf.writeBigUInt64BE(apply, 17);
  buf.writeBigInt64BE(BigInt(nowMs - PG_EPOCH_MS) * 1000n, 25);
  buf[33] = replyRequested ? 1 : 0;
  return buf;
}

/** A Postgres timestamp (µs since 2000-01-01) as epoch milliseconds. */
export function pgTimeToMs(micros: bigint): number {
  return PG_EPOCH_MS + Number(micros / 1000n);
}
