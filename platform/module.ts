import type { DescMessage, DescService, MessageShape, MessageInitShape } from "@bufbuild/protobuf";
import type { Client, ServiceImpl } from "@connectrpc/connect";
import type { Hono } from "hono";
import type * as z from "zod";
import type { BaseSQLiteDatabase } from "drizzle-orm/sqlite-core";
import type { Logger } from "./observability/logger.ts";
import type { Dialect, ReadQuery, StatementValues, WriteChecks, WriteStatement } from "./storage/statements.ts";

/** A drizzle database over one module's private SQLite file (bun:sqlite or better-sqlite3; both synchronous). */
export type SqliteDb = BaseSQLiteDatabase<"sync", unknown>;

/** One migration of one module, embedded in the binary (see `bun run gen`). */
export interface Migration {
  /** Sortable id, e.g. `0001_init`. Applied in id order, once, tracked per module. */
  readonly id: string;
  /** The SQL text; may hold several statements. */
  readonly sql: string;
}

/** A module's migrations per storage dialect. */
export interface MigrationSet {
  readonly sqlite: readonly Migration[];
  readonly postgres?: readonly Migration[];
}

/** Metadata of a consumed event, from its envelope. */
export interface EventMeta {
  /** UUIDv7 of the event; the inbox key. */
  readonly id: string;
  /** Fully-qualified protobuf type name, e.g. `orders.v1.OrderCreated`. */
  readonly type: string;
  /** Module that published it. */
  readonly source: string;
  /** The aggregate it belongs to; order is kept per aggregate. */
  readonly aggregateId: string;
  /** When the publishing transaction committed (ms since epoch). */
  readonly occurredAt: number;
  /** Headers, including W3C `traceparent`. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * The transaction handed to a command or an event handler. Everything done through it commits
 * atomically in the module's own database: business rows (`write`) and outgoing events
 * (`publish`, which writes the transactional outbox).
 *
 * The body that receives a `Tx` is synchronous and only writes: do every read and every await
 * (RPC calls) before it. SQLite runs the writes at once; Postgres runs them after the body
 * returned, pipelined with the writes of other bodies in one transaction. A body therefore
 * states what its writes expect (`WriteChecks`) instead of reading: a unique constraint instead
 * of a lookup, an expected-version `UPDATE` instead of read-then-write (ADR 0008).
 */
export interface Tx {
  readonly dialect: Dialect;
  /**
   * Runs (SQLite) or schedules (Postgres) one write of this module's tables.
   * @example tx.write(insertProduct, product, { ifDuplicate: () => skuTaken(product.sku) })
   */
  write(statement: WriteStatement, values: StatementValues, checks?: WriteChecks): void;
  /**
   * Appends an event to the outbox in this transaction. Returns the event id (UUIDv7).
   * @example tx.publish(OrderCreatedSchema, order.id, { orderId: order.id, ... })
   */
  publish<D extends DescMessage>(schema: D, aggregateId: string, event: MessageInitShape<D>): string;
}

/** A module's private storage: one SQLite file (embedded) or one schema under its own role (Postgres). */
export interface ModuleStorage {
  readonly module: string;
  readonly dialect: Dialect;
  /** Runs a read outside any transaction. */
  read<Row>(query: ReadQuery<Row>, values?: StatementValues): Promise<Row[]>;
  /**
   * Runs `body` in one transaction and resolves with its result once it is durably committed.
   * Concurrent calls are group-committed (one COMMIT for many bodies; a failing body rolls back
   * alone). `body` must be synchronous; a body returning a Promise is rolled back and rejected.
   */
  transact<T>(body: (tx: Tx) => T): Promise<T>;
  /**
   * Raw SQL read in this module's database, for tests and operator tools; `?` placeholders in
   * either dialect. Module code uses `read` with a declared query.
   */
  queryRaw<Row = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<Row[]>;
}

/**
 * A handler for one event type, run inside the consumer's transaction together with its inbox
 * entry. `load`, when given, runs first, outside the transaction: it reads what `handle` needs to
 * decide (an account, a saga, an event stream). `handle` then only writes, with checks — if a
 * check throws `WriteConflict` (someone else changed what was loaded), the platform loads and
 * handles the event again.
 */
export interface EventHandler<D extends DescMessage = DescMessage, S = any> {
  readonly event: D;
  readonly load?: (event: MessageShape<D>, meta: EventMeta) => Promise<S>;
  /**
   * What the handler's writes contend on (e.g. the product ids of a reservation). Deliveries
   * with a key in common run one after the other within this process, from load to commit, so
   * they do not all load the same version and conflict; others run side by side.
   */
  readonly serializeBy?: (event: MessageShape<D>) => readonly string[];
  handle(event: MessageShape<D>, meta: EventMeta, tx: Tx, state: S): void;
}

/**
 * Binds an event schema to its handler with full typing.
 * @example on(OrderCreatedSchema, (e, meta, tx) => {...})
 * @example on(OrderCreatedSchema, { load: (e) => accounts.byId(storage, e.customerId), handle: (e, meta, tx, account) => {...} })
 */
export function on<D extends DescMessage>(event: D, handle: (event: MessageShape<D>, meta: EventMeta, tx: Tx) => void): EventHandler<D, undefined>;
export function on<D extends DescMessage, S>(
  event: D,
  handler: {
    load: (event: MessageShape<D>, meta: EventMeta) => Promise<S>;
    handle: (event: MessageShape<D>, meta: EventMeta, tx: Tx, state: S) => void;
    serializeBy?: (event: MessageShape<D>) => readonly string[];
  },
): EventHandler<D, S>;
export function on<D extends DescMessage, S>(
  event: D,
  handler:
    | ((event: MessageShape<D>, meta: EventMeta, tx: Tx) => void)
    | {
        load: (event: MessageShape<D>, meta: EventMeta) => Promise<S>;
        handle: (event: MessageShape<D>, meta: EventMeta, tx: Tx, state: S) => void;
        serializeBy?: (event: MessageShape<D>) => readonly string[];
      },
): EventHandler<D, S> {
  return typeof handler === "function" ? { event, handle: handler as EventHandler<D, S>["handle"] } : { event, load: handler.load, handle: handler.handle, serializeBy: handler.serializeBy };
}

/** A durable subscription: its events are delivered at least once, in order per aggregate, with effects exactly once (inbox). */
export interface SubscriptionSpec {
  /** Durable name, unique within the module, e.g. `projection`. The consumer is `<module>.<name>`. */
  readonly name: string;
  readonly handlers: readonly EventHandler<any>[];
  /**
   * Marks the subscription as a read model built from its events alone: they are retained for
   * replay, and `bun run main.ts replay <module>.<name>` rebuilds it into a shadow copy with a
   * second instance of the module, then swaps the tables in.
   */
  readonly readModel?: ReadModelSpec;
  /**
   * How long, in ms, a batch may wait for more events once its first one arrived: fewer, larger
   * transactions for a consumer nobody waits on (a read model, notifications), at up to this much
   * delay. `bus.lingerMs.<module>.<name>` overrides it. Absent or 0: delivered as they arrive.
   */
  readonly lingerMs?: number;
}

/** The tables of a read model, which its rebuild replaces (see `SubscriptionSpec.readModel`). */
export interface ReadModelSpec {
  /**
   * Every table this subscription writes and nothing else does; a rebuild replaces exactly these
   * in one transaction. Other tables must not reference them.
   */
  readonly tables: readonly string[];
}

/** A table whose row changes the platform captures (see `ModuleManifest.captures`). */
export interface CaptureSpec {
  /** The module owning the table, e.g. `catalog`. */
  readonly module: string;
  /** The table, e.g. `products`; it needs a primary key (the events' aggregate id). */
  readonly table: string;
}

/** A Connect service implemented by a module. */
export interface ServiceBinding<S extends DescService = DescService> {
  readonly service: S;
  readonly impl: Partial<ServiceImpl<S>>;
}

/** Binds a service descriptor to its implementation with full typing. */
export function service<S extends DescService>(desc: S, impl: Partial<ServiceImpl<S>>): ServiceBinding<S> {
  return { service: desc, impl };
}

/** What the platform hands a module at start. */
export interface ModuleContext<C> {
  readonly name: string;
  /** The module's validated config slice. Modules never read the environment. */
  readonly config: C;
  readonly storage: ModuleStorage;
  readonly logger: Logger;
  /** The process's Prometheus registry, for the module's own figures. */
  readonly metrics: ModuleMetrics;
  /**
   * A typed client for another module's service. In-process when the callee runs here (no
   * serialisation, no network), Connect over HTTP when it does not; the calling code is the same.
   */
  client<S extends DescService>(service: S): Client<S>;
}

/** The metrics a module may define (names start with `selaras_`). */
export interface ModuleMetrics {
  /** A gauge read at scrape time; a collect that throws leaves it empty for that scrape. */
  gauge(name: string, help: string, labelNames: string[], collect: (set: (labels: Record<string, string>, value: number) => void) => void | Promise<void>): void;
  counter(name: string, help: string, labelNames: string[]): { labels(labels: Record<string, string>): { inc(n?: number): void } };
}

/** What a started module gives back to the platform. */
export interface ModuleInstance {
  readonly services?: readonly ServiceBinding<any>[];
  /** Public REST routes, mounted on the shared Hono app. */
  readonly routes?: (app: Hono) => void;
  readonly subscriptions?: readonly SubscriptionSpec[];
  /** Called on shutdown after the HTTP server stopped taking requests. */
  stop?(): Promise<void> | void;
}

/**
 * A module's manifest: the only thing `main.ts` imports from a module.
 *
 * @example
 * export default defineModule({
 *   name: "catalog",
 *   migrations,
 *   services: [CatalogService],
 *   publishes: [ProductCreatedSchema],
 *   start: (ctx) => ({ services: [service(CatalogService, impl)], routes }),
 * });
 */
export interface ModuleManifest<C = unknown> {
  /** kebab-case; also the storage file / schema name. */
  readonly name: string;
  readonly migrations: MigrationSet;
  /** Services this module implements (used to route clients to it). */
  readonly services?: readonly DescService[];
  /** Services of other modules this module calls. */
  readonly dependsOn?: readonly DescService[];
  /** Event types this module publishes. */
  readonly publishes?: readonly DescMessage[];
  /**
   * Tables of other modules whose committed row changes this module consumes, as
   * `selaras.v1.ChangeEvent` (change data capture: the owning module's code is not involved).
   * The process hosting the owning module captures them; see platform/cdc/README.md.
   * @example captures: [{ module: "catalog", table: "products" }]
   */
  readonly captures?: readonly CaptureSpec[];
  /** zod schema of the module's config slice (`modules.<name>` in the config file). */
  readonly config?: z.ZodType<C>;
  start(ctx: ModuleContext<C>): ModuleInstance | Promise<ModuleInstance>;
}

/** Declares a module manifest (identity function for typing). */
export function defineModule<C = unknown>(manifest: ModuleManifest<C>): ModuleManifest<C> {
  return manifest;
}
