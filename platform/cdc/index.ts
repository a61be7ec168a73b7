/**
 * Change data capture from the PostgreSQL WAL: a reader of a permanent pgoutput logical
 * replication slot that emits Debezium-style change events at least once, in commit order, and
 * survives restarts and dropped connections. See README.md for the guarantee and privileges.
 * @module
 */

/**
 * Starts streaming a slot's changes to a callback; resolves once streaming.
 * @example
 * const cdc = await startCdc({ connection: url, slot: "orders_cdc", publication: "orders_cdc",
 *   tables: [{ schema: "orders", table: "orders" }], onChanges: async (changes) => project(changes) });
 */
export { startCdc, type CdcOptions, type CdcReader, type ChangeBatch } from "./reader.ts";

/**
 * Slot and publication administration, idempotent.
 * @example await ensureSlotAndPublication(admin, { slot: "s", publication: "p", tables: [{ schema: "orders", table: "orders" }] });
 */
export { ensureSlotAndPublication, dropSlot, dropPublication, slotLag, assertLogicalWal, assertReplicationRole, type TableRef, type SlotAndPublication, type PublishedOperation } from "./admin.ts";

/**
 * The Debezium change event envelope.
 * @example if (event.op === "u") console.log(event.before, "→", event.after);
 */
export { UNAVAILABLE_VALUE, type ChangeEvent, type ChangeOp, type ChangeSource, type Row } from "./change-event.ts";

/**
 * Raised by the first start for what retrying cannot fix (missing slot, wrong plugin).
 * @example try { await startCdc(opts) } catch (e) { if (e instanceof CdcSetupError) … }
 */
export { CdcSetupError, type CdcConnection } from "./session.ts";

/**
 * LSN helpers: Postgres' `X/Y` text form ↔ bigint.
 * @example parseLsn(cdc.confirmedLsn) >= parseLsn(commitLsn)
 */
export { formatLsn, parseLsn, type Lsn } from "./lsn.ts";

/**
 * Platform capture: the tables modules declare in `captures`, captured by the process hosting
 * their owner — from a slot `<schema>_cdc` on Postgres, by triggers on SQLite — and published as
 * `selaras.v1.ChangeEvent` (see README.md, "Platform capture").
 * @example createPlatform({ config, modules, captures: capturesOf(allModules) })
 */
export { capturesOf, collectCaptures, startCaptures, type Captures, type CaptureDeps } from "./capture.ts";

/**
 * Consuming captured changes: one event type for every table, filtered by module and table.
 * @example on(ChangeEventSchema, (e, meta, tx) => { if (isChangeOf(e, "catalog", "products")) upsert(tx, e.after); })
 */
export { isChangeOf, stableEventId, aggregateKey, changeEnvelope, type CapturedChange } from "./capture-event.ts";

/**
 * The slot and publication of a module's capture: `<schema>_cdc`.
 * @example await dropSlot(admin, captureSlotName("selaras_catalog")) // when no module captures it any more
 */
export { captureSlotName } from "./capture-postgres.ts";
