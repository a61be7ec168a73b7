/*
 * A parser of pgoutput, the built-in logical decoding output plugin, protocol version 1
 * (PostgreSQL docs, "Logical Replication Message Formats"). Values arrive in text format.
 */
import type { Lsn } from "./lsn.ts";
import { pgTimeToMs } from "./replication-protocol.ts";

/** A column of a published table, as the Relation message describes it. */
export interface RelationColumn {
  readonly name: string;
  /** The type's OID: how `decodeValue` reads the text. */
  readonly typeOid: number;
  readonly typmod: number;
  /** Part of the replica identity (the key sent in `before` when the identity is not FULL). */
  readonly isKey: boolean;
}

/** A published table. Sent before its first change in a session and after each schema change. */
export interface Relation {
  readonly id: number;
  readonly schema: string;
  readonly table: string;
  /** `d` default (primary key), `n` nothing, `f` full, `i` index. */
  readonly replicaIdentity: string;
  readonly columns: readonly RelationColumn[];
}

/** A row in text format: `null` is SQL NULL, `undefined` an unchanged TOASTed value that was not sent. */
export type RawTuple = ReadonlyArray<string | null | undefined>;

/** One pgoutput message. */
export type PgOutputMessage =
  | { type: "begin"; finalLsn: Lsn; commitTimeMs: number; xid: number }
  | { type: "commit"; commitLsn: Lsn; endLsn: Lsn; commitTimeMs: number }
  | { type: "relation"; relation: Relation }
  | { type: "insert"; relationId: number; after: RawTuple }
  /** `before` is there when the identity is FULL (`O`, the whole old row) or the key changed (`K`). */
  | { type: "update"; relationId: number; before: RawTuple | undefined; beforeIsKeyOnly: boolean; after: RawTuple }
  | { type: "delete"; relationId: number; before: RawTuple; beforeIsKeyOnly: boolean }
  | { type: "truncate"; relationIds: number[]; cascade: boolean; restartIdentity: boolean }
  /** Origin, Type and logical-decoding messages: nothing a change event needs. */
  | { type: "ignored"; tag: string };

/** Reads a pgoutput message; throws on a malformed or unknown one (the stream cannot be trusted past it). */
export function parsePgOutput(buf: Buffer): PgOutputMessage {
  const r = new Reader(buf);
  const tag = String.fromCharCode(r.byte());
  switch (tag) {
    case "B":
      return { type: "begin", finalLsn: r.u64(), commitTimeMs: pgTimeToMs(r.i64()), xid: r.u32() };
    case "C": {
      r.byte(); // flags, unused
      return { type: "commit", commitLsn: r.u64(), endLsn: r.u64(), commitTimeMs: pgTimeToMs(r.i64()) };
    }
    case "R":
      return { type: "relation", relation: readRelation(r) };
    case "I": {
      const relationId = r.u32();
      r.expect("N");
      return { type: "insert", relationId, after: readTuple(r) };
    }
    case "U": {
      const relationId = r.u32();
      let kind = String.fromCharCode(r.byte());
      let before: RawTuple | undefined;
      const beforeIsKeyOnly = kind === "K";
      if (kind === "K" || kind === "O") {
        before = readTuple(r);
        kind = String.fromCharCode(r.byte());
      }
      if (kind !== "N") throw new Error(`pgoutput: update without a new tuple (${kind})`);
      return { type: "update", relationId, before, beforeIsKeyOnly, after: readTuple(r) };
    }
    case "D": {
      const relationId = r.u32();
      const kind = String.fromCharCode(r.byte());
      if (kind !== "K" && kind !== "O") throw new Error(`pgoutput: delete without an old tuple (${kind})`);
      return { type: "delete", relationId, before: readTuple(r), beforeIsKeyOnly: kind === "K" };
    }
    case "T": {
      const n = r.u32();
      const options = r.byte();
      const relationIds = Array.from({ length: n }, () => r.u32());
      return { type: "truncate", relationIds, cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0 };
    }
    case "O":
    case "Y":
    case "M":
      return { type: "ignored", tag };
    default:
      throw new Error(`pgoutput: unknown message ${JSON.stringify(tag)}`);
  }
}

function readRelation(r: Reader): Relation {
  const id = r.u32();
  // An empty namespace means pg_catalog.
  const schema = r.cstring() || "pg_catalog";
  const table = r.cstring();
  const replicaIdentity = String.fromCharCode(r.byte());
  const columns: RelationColumn[] = [];
  for (let n = r.u16(); n > 0; n--) {
    const flags = r.byte();
    columns.push({ name: r.cstring(), typeOid: r.u32(), typmod: r.i32(), isKey: (flags & 1) !== 0 });
  }
  return { id, schema, table, replicaIdentity, columns };
}

function readTuple(r: Reader): RawTuple {
  const values: Array<string | null | undefined> = [];
  for (let n = r.u16(); n > 0; n--) {
    const kind = String.fromCharCode(r.byte());
    if (kind === "n") values.push(null);
    else if (kind === "u") values.push(undefined);
    else if (kind === "t") values.push(r.text(r.u32()));
    // `b` (binary) only comes when asked for with the `binary` option, which the reader never sets.
    else throw new Error(`pgoutput: unsupported tuple value kind ${JSON.stringify(kind)}`);
  }
  return values;
}

/** A bounds-checked cursor over a message. */
class Reader {
  #at = 0;
  constructor(private readonly buf: Buffer) {}

  #take(n: number): number {
    const at = this.#at;
    if (at + n > this.buf.length) throw new Error("pgoutput: message ends early");
    this.#at += n;
    return at;
  }
  byte(): number {
    return this.buf[this.#take(1)]!;
  }
  expect(ch: string): void {
    const got = String.fromCharCode(this.byte());
    if (got !== ch) throw new Error(`pgoutput: expected ${ch}, got ${got}`);
  }
  u16(): number {
    return this.buf.readUInt16BE(this.#take(2));
  }
  u32(): number {
    return this.buf.readUInt32BE(this.#take(4));
  }
  i32(): number {
    return this.buf.readInt32BE(this.#take(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64BE(this.#take(8));
  }
  i64(): bigint {
    return this.buf.readBigInt64BE(this.#take(8));
  }
  text(n: number): string {
    const at = this.#take(n);
    return this.buf.toString("utf8", at, at + n);
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.#at);
    if (end < 0) throw new Error("pgoutput: unterminated string");
    const s = this.buf.toString("utf8", this.#at, end);
    this.#at = end + 1;
    return s;
  }
}
