import { describe, expect, it } from "vitest";
import { TransactionAssembler, UNAVAILABLE_VALUE } from "./change-event.ts";
import { formatLsn, parseLsn } from "./lsn.ts";
import { parsePgOutput } from "./pgoutput.ts";
import { parseServerMessage, standbyStatusUpdate } from "./replication-protocol.ts";

// Unit: the replication framing, pgoutput v1 parsing and transaction assembly, on hand-built bytes.

/** Builds a message the way the server encodes it. */
class Msg {
  readonly parts: Buffer[] = [];
  byte(ch: string | number) {
    this.parts.push(Buffer.from([typeof ch === "string" ? ch.charCodeAt(0) : ch]));
    return this;
  }
  u16(n: number) {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n);
    this.parts.push(b);
    return this;
  }
  u32(n: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    this.parts.push(b);
    return this;
  }
  u64(n: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    this.parts.push(b);
    return this;
  }
  cstr(s: string) {
    this.parts.push(Buffer.from(s + "\0"));
    return this;
  }
  /** A tuple: a string is a text value, null SQL NULL, undefined an unchanged TOAST value. */
  tuple(values: Array<string | null | undefined>) {
    this.u16(values.length);
    for (const v of values) {
      if (v === null) this.byte("n");
      else if (v === undefined) this.byte("u");
      else {
        const b = Buffer.from(v);
        this.byte("t").u32(b.length);
        this.parts.push(b);
      }
    }
    return this;
  }
  get buf() {
    return Buffer.concat(this.parts);
  }
}

const commitMicros = 768_000_000_000_000n; // 2024-05-03 in µs since 2000-01-01
const relation = () =>
  new Msg().byte("R").u32(16384).cstr("shop").cstr("orders").byte("f").u16(3)
    .byte(1).cstr("id").u32(23).u32(0xffffffff)
    .byte(0).cstr("note").u32(25).u32(0xffffffff)
    .byte(0).cstr("doc").u32(3802).u32(0xffffffff).buf;

describe("replication framing", () => {
  it("reads XLogData and keepalives, and writes a standby status update", () => {
    const w = Buffer.concat([new Msg().byte("w").u64(0x100n).u64(0x200n).u64(0n).buf, Buffer.from("B")]);
    expect(parseServerMessage(w)).toEqual({ kind: "xlog", walStart: 0x100n, walEnd: 0x200n, data: Buffer.from("B") });
    const k = new Msg().byte("k").u64(0x1_0000_0010n).u64(0n).byte(1).buf;
    expect(parseServerMessage(k)).toEqual({ kind: "keepalive", walEnd: 0x1_0000_0010n, replyRequested: true });
    expect(parseServerMessage(Buffer.from("?"))).toBeUndefined();

    const r = standbyStatusUpdate(3n, 2n, 1n, true, Date.UTC(2000, 0, 1) + 5);
    expect(r.length).toBe(34);
    expect(String.fromCharCode(r[0]!)).toBe("r");
    expect([r.readBigUInt64BE(1), r.readBigUInt64BE(9), r.readBigUInt64BE(17), r.readBigInt64BE(25), r[33]]).toEqual([3n, 2n, 1n, 5000n, 1]);
  });

  it("formats and parses LSNs like Postgres", () => {
    expect(formatLsn(0x16_b374d848n)).toBe("16/B374D848");
    expect(parseLsn("16/B374D848")).toBe(0x16_b374d848n);
    expect(parseLsn("0/0")).toBe(0n);
    expect(() => parseLsn("nope")).toThrow();
  });
});

describe("pgoutput", () => {
  it("parses begin, relation, insert, update with the old row, delete by key, truncate, commit", () => {
    expect(parsePgOutput(new Msg().byte("B").u64(0x500n).u64(commitMicros).u32(742).buf)).toEqual({
      type: "begin", finalLsn: 0x500n, commitTimeMs: Date.UTC(2000, 0, 1) + 768_000_000_000, xid: 742,
    });
    expect(parsePgOutput(relation())).toEqual({
      type: "relation",
      relation: {
        id: 16384, schema: "shop", table: "orders", replicaIdentity: "f",
        columns: [
          { name: "id", typeOid: 23, typmod: -1, isKey: true },
          { name: "note", typeOid: 25, typmod: -1, isKey: false },
          { name: "doc", typeOid: 3802, typmod: -1, isKey: false },
        ],
      },
    });
    expect(parsePgOutput(new Msg().byte("I").u32(16384).byte("N").tuple(["1", null, "{}"]).buf)).toEqual({ type: "insert", relationId: 16384, after: ["1", null, "{}"] });
    expect(parsePgOutput(new Msg().byte("U").u32(16384).byte("O").tuple(["1", "a", "{}"]).byte("N").tuple(["1", "b", undefined]).buf)).toEqual({
      type: "update", relationId: 16384, before: ["1", "a", "{}"], beforeIsKeyOnly: false, after: ["1", "b", undefined],
    });
    expect(parsePgOutput(new Msg().byte("U").u32(16384).byte("N").tuple(["1", "b", "{}"]).buf)).toMatchObject({ before: undefined });
    expect(parsePgOutput(new Msg().byte("D").u32(16384).byte("K").tuple(["1", null, null]).buf)).toEqual({
      type: "delete", relationId: 16384, before: ["1", null, null], beforeIsKeyOnly: true,
    });
    expect(parsePgOutput(new Msg().byte("T").u32(2).byte(1).u32(1).u32(2).buf)).toEqual({ type: "truncate", relationIds: [1, 2], cascade: true, restartIdentity: false });
    expect(parsePgOutput(new Msg().byte("C").byte(0).u64(0x500n).u64(0x530n).u64(commitMicros).buf)).toMatchObject({ type: "commit", commitLsn: 0x500n, endLsn: 0x530n });
    expect(parsePgOutput(new Msg().byte("O").u64(1n).cstr("origin").buf)).toEqual({ type: "ignored", tag: "O" });
  });

  it("refuses unknown and truncated messages instead of guessing", () => {
    expect(() => parsePgOutput(Buffer.from("Z"))).toThrow(/unknown message/);
    expect(() => parsePgOutput(new Msg().byte("I").u32(1).byte("N").u16(1).byte("t").u32(10).buf)).toThrow(/ends early/);
  });
});

describe("TransactionAssembler", () => {
  const feed = (a: TransactionAssembler, ...msgs: Array<[Buffer, bigint]>) => msgs.map(([m, lsn]) => a.push(parsePgOutput(m), lsn));

  it("turns a transaction into Debezium events with stable ids, filling unchanged TOAST values from before", () => {
    const a = new TransactionAssembler("shopdb", () => 42);
    const out = feed(
      a,
      [new Msg().byte("B").u64(0x500n).u64(commitMicros).u32(742).buf, 0x400n],
      [relation(), 0x410n],
      [new Msg().byte("I").u32(16384).byte("N").tuple(["1", "a", '{"big":"doc"}']).buf, 0x410n],
      [new Msg().byte("U").u32(16384).byte("O").tuple(["1", "a", '{"big":"doc"}']).byte("N").tuple(["1", "b", undefined]).buf, 0x420n],
      [new Msg().byte("U").u32(16384).byte("N").tuple(["1", "c", undefined]).buf, 0x430n],
      [new Msg().byte("D").u32(16384).byte("O").tuple(["1", "c", '{"big":"doc"}']).buf, 0x440n],
    );
    expect(out.every((x) => x === undefined)).toBe(true);
    expect(a.inTransaction).toBe(true);
    const [tx] = feed(a, [new Msg().byte("C").byte(0).u64(0x500n).u64(0x530n).u64(commitMicros).buf, 0x530n]);
    expect(a.inTransaction).toBe(false);
    expect(tx).toMatchObject({ xid: 742, commitLsn: 0x500n, endLsn: 0x530n });
    const source = (lsn: number) => ({ connector: "postgresql", db: "shopdb", schema: "shop", table: "orders", lsn, commitLsn: 0x500, txId: 742, ts_ms: Date.UTC(2000, 0, 1) + 768_000_000_000, snapshot: false });
    expect(tx!.changes).toEqual([
      { id: "1280:0", op: "c", before: null, after: { id: 1, note: "a", doc: { big: "doc" } }, source: source(0x410), ts_ms: 42 },
      { id: "1280:1", op: "u", before: { id: 1, note: "a", doc: { big: "doc" } }, after: { id: 1, note: "b", doc: { big: "doc" } }, source: source(0x420), ts_ms: 42 },
      { id: "1280:2", op: "u", before: null, after: { id: 1, note: "c", doc: UNAVAILABLE_VALUE }, source: source(0x430), ts_ms: 42 },
      { id: "1280:3", op: "d", before: { id: 1, note: "c", doc: { big: "doc" } }, after: null, source: source(0x440), ts_ms: 42 },
    ]);
  });

  it("refuses a change of a relation it was not told about, or outside a transaction", () => {
    const a = new TransactionAssembler("db");
    expect(() => feed(a, [new Msg().byte("I").u32(1).byte("N").tuple(["1"]).buf, 1n])).toThrow(/outside a transaction/);
    feed(a, [new Msg().byte("B").u64(0x500n).u64(commitMicros).u32(1).buf, 1n]);
    expect(() => feed(a, [new Msg().byte("I").u32(1).byte("N").tuple(["1"]).buf, 1n])).toThrow(/before its Relation/);
  });
});
