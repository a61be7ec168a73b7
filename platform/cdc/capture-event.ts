import { createHash } from "node:crypto";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { ChangeEventSchema, type ChangeEvent as ChangeEventMessage } from "../../gen/selaras/v1/cdc_pb.ts";
import type { EventEnvelope } from "../bus/types.ts";
import type { ChangeOp, Row } from "./change-event.ts";

/** A captured row change, either dialect, before it becomes a bus event. */
export interface CapturedChange {
  /** The event id: a UUID, stable across redeliveries of the same change (see `stableEventId`). */
  readonly id: string;
  readonly op: ChangeOp;
  readonly before: Row | null;
  readonly after: Row | null;
  /** The row's primary key as text: the event's aggregate id (see `aggregateKey`). */
  readonly key: string;
  readonly source: {
    readonly connector: "postgresql" | "sqlite";
    readonly db: string;
    readonly schema: string;
    readonly table: string;
    readonly module: string;
    readonly lsn: number;
    readonly commitLsn: number;
    readonly txId: number;
    readonly tsMs: number;
    readonly snapshot: boolean;
  };
}

/**
 * A UUID (version 7 layout) derived from `parts`: its first 48 bits are `ms`, the rest a hash.
 * The same change always gets the same id, so the bus (and the consumers' inboxes) drop a
 * republished copy; the time prefix keeps inbox keys time-ordered and prunable by age.
 * @example stableEventId(commitMs, "shop", "selaras_catalog_cdc", "23844000", "0")
 */
export function stableEventId(ms: number, ...parts: string[]): string {
  const time = Math.max(0, Math.floor(ms)).toString(16).padStart(12, "0").slice(-12);
  const h = createHash("sha256").update(parts.join("\u0000")).digest("hex");
  const variant = (8 | (parseInt(h[3]!, 16) & 3)).toString(16);
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${h.slice(0, 3)}-${variant}${h.slice(4, 7)}-${h.slice(7, 19)}`;
}

/**
 * A row's aggregate id: its one primary-key column as text, a JSON array for a composite key,
 * the table name when the table has no key (then every change of the table is one aggregate).
 */
export function aggregateKey(row: Row | null, keyColumns: readonly string[], table: string): string {
  if (!row || keyColumns.length === 0) return table;
  if (keyColumns.length === 1) return String(row[keyColumns[0]!]);
  return JSON.stringify(keyColumns.map((c) => row[c] ?? null));
}

/** The bus envelope of a captured change: type `selaras.v1.ChangeEvent`, source the owning module, occurred at commit. */
export function changeEnvelope(c: CapturedChange, now = Date.now()): EventEnvelope {
  const s = c.source;
  const message = create(ChangeEventSchema, {
    op: c.op,
    before: (c.before ?? undefined) as JsonObject | undefined,
    after: (c.after ?? undefined) as JsonObject | undefined,
    source: {
      connector: s.connector,
      db: s.db,
      schema: s.schema,
      table: s.table,
      module: s.module,
      lsn: BigInt(s.lsn),
      commitLsn: BigInt(s.commitLsn),
      txId: BigInt(s.txId),
      tsMs: BigInt(s.tsMs),
      snapshot: s.snapshot,
    },
    tsMs: BigInt(now),
  });
  return {
    id: c.id,
    type: ChangeEventSchema.typeName,
    source: s.module,
    aggregateId: c.key,
    payload: toBinary(ChangeEventSchema, message),
    headers: {},
    occurredAt: s.tsMs,
  };
}

/**
 * Whether a consumed change event is of `module`'s `table` — every captured table's changes
 * share one event type, so a handler keeps the ones it wants.
 * @example on(ChangeEventSchema, (e, meta, tx) => { if (!isChangeOf(e, "catalog", "products")) return; … })
 */
export function isChangeOf(event: ChangeEventMessage, module: string, table: string): boolean {
  return event.source?.module === module && event.source.table === table;
}
