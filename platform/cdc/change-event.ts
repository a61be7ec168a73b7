import { decodeValue } from "./decode-value.ts";
import type { Lsn } from "./lsn.ts";
import type { PgOutputMessage, RawTuple, Relation } from "./pgoutput.ts";

/** A row: column name → value decoded by `decodeValue`. */
export type Row = Record<string, unknown>;

/** Debezium's operations: create, update, delete, read (snapshot), truncate. */
export type ChangeOp = "c" | "u" | "d" | "r" | "t";

/**
 * Stands for an unchanged TOASTed value that Postgres did not send and `before` could not
 * supply (replica identity not FULL) — Debezium's `unavailable.value.placeholder`.
 */
export const UNAVAILABLE_VALUE = "__debezium_unavailable_value";

/** Where a change comes from (Debezium's `source` block). */
export interface ChangeSource {
  readonly connector: "postgresql";
  readonly db: string;
  readonly schema: string;
  readonly table: string;
  /** The change's own WAL position, as a number like Debezium's (exact below 2^53 bytes of WAL). */
  readonly lsn: number;
  /** The WAL position of its transaction's commit record: the same for every change of the transaction. */
  readonly commitLsn: number;
  /** The transaction id (32-bit xid). */
  readonly txId: number;
  /** Commit time of the transaction, epoch ms. */
  readonly ts_ms: number;
  readonly snapshot: boolean;
}

/**
 * One row change in the Debezium envelope.
 * @example { id: "23844000:0", op: "u", before: { id: 1, qty: 2 }, after: { id: 1, qty: 3 }, source: {…}, ts_ms: 1714557600123 }
 */
export interface ChangeEvent {
  /**
   * Stable across redeliveries: `${source.commitLsn}:${position in the transaction}`. A consumer
   * deduplicates on it (or on the commit LSN alone, since a transaction is redelivered whole).
   */
  readonly id: string;
  readonly op: ChangeOp;
  /** The row before: the whole row with REPLICA IDENTITY FULL, else only the key columns (deletes, key changes) or null. */
  readonly before: Row | null;
  /** The row after; null for deletes and truncates. */
  readonly after: Row | null;
  readonly source: ChangeSource;
  /** When the reader built the event, epoch ms (differs between deliveries; `source.ts_ms` does not). */
  readonly ts_ms: number;
}

/** A committed transaction's changes, in the order it made them. */
export interface CommittedTransaction {
  readonly xid: number;
  /** Start of the commit record. */
  readonly commitLsn: Lsn;
  /** End of the commit record: confirming it tells the server the transaction is done with. */
  readonly endLsn: Lsn;
  readonly commitTimeMs: number;
  readonly changes: ChangeEvent[];
}

interface OpenTransaction {
  xid: number;
  commitLsn: Lsn;
  commitTimeMs: number;
  changes: ChangeEvent[];
}

/**
 * Turns a session's pgoutput messages into committed transactions of change events. Relations
 * are cached per session (the server sends them again to each new connection).
 */
export class TransactionAssembler {
  readonly #relations = new Map<number, Relation>();
  #open: OpenTransaction | undefined;

  constructor(
    private readonly db: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Between a Begin and its Commit: a keepalive's position then says nothing about what was delivered. */
  get inTransaction(): boolean {
    return this.#open !== undefined;
  }

  /** Feeds one message (`lsn`: the XLogData start it came with); returns the transaction a Commit completed. */
  push(msg: PgOutputMessage, lsn: Lsn): CommittedTransaction | undefined {
    switch (msg.type) {
      case "begin":
        this.#open = { xid: msg.xid, commitLsn: msg.finalLsn, commitTimeMs: msg.commitTimeMs, changes: [] };
        return undefined;
      case "commit": {
        const tx = this.#requireOpen(msg.type);
        this.#open = undefined;
        return { xid: tx.xid, commitLsn: tx.commitLsn, endLsn: msg.endLsn, commitTimeMs: tx.commitTimeMs, changes: tx.changes };
      }
      case "relation":
        this.#relations.set(msg.relation.id, msg.relation);
        return undefined;
      case "insert":
        this.#add("c", msg.relationId, lsn, null, msg.after);
        return undefined;
      case "update":
        this.#add("u", msg.relationId, lsn, msg.before ?? null, msg.after);
        return undefined;
      case "delete":
        this.#add("d", msg.relationId, lsn, msg.before, null);
        return undefined;
      case "truncate":
        for (const id of msg.relationIds) this.#add("t", id, lsn, null, null);
        return undefined;
      case "ignored":
        return undefined;
    }
  }

  #requireOpen(what: string): OpenTransaction {
    if (!this.#open) throw new Error(`pgoutput: ${what} outside a transaction`);
    return this.#open;
  }

  #add(op: ChangeOp, relationId: number, lsn: Lsn, beforeRaw: RawTuple | null, afterRaw: RawTuple | null): void {
    const tx = this.#requireOpen(op);
    const rel = this.#relations.get(relationId);
    if (!rel) throw new Error(`pgoutput: change of relation ${relationId} before its Relation message`);
    const before = beforeRaw && toRow(rel, beforeRaw, null);
    const after = afterRaw && toRow(rel, afterRaw, before);
    const commitLsn = Number(tx.commitLsn);
    tx.changes.push({
      id: `${commitLsn}:${tx.changes.length}`,
      op,
      before,
      after,
      source: { connector: "postgresql", db: this.db, schema: rel.schema, table: rel.table, lsn: Number(lsn), commitLsn, txId: tx.xid, ts_ms: tx.commitTimeMs, snapshot: false },
      ts_ms: this.now(),
    });
  }
}

/** A tuple as a row; an unchanged TOASTed value is taken from `before` when that has it. */
function toRow(rel: Relation, tuple: RawTuple, before: Row | null): Row {
  if (tuple.length !== rel.columns.length) throw new Error(`pgoutput: ${rel.schema}.${rel.table} tuple has ${tuple.length} columns, relation ${rel.columns.length}`);
  const row: Row = {};
  rel.columns.forEach((col, i) => {
    const v = tuple[i];
    if (v === undefined) {
      const prior = before?.[col.name];
      row[col.name] = prior !== undefined && prior !== null ? prior : UNAVAILABLE_VALUE;
    } else row[col.name] = v === null ? null : decodeValue(v, col.typeOid);
  });
  return row;
}
