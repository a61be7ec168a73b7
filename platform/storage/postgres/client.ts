import type { PgDatabase } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import type { Options, Sql } from "postgres";

/**
 * The connection pool a module's storage reads and writes through: postgres.js, or Bun's native
 * `Bun.sql` under Bun (ADR 0014). Only the hot path uses it — reads, group commits, raw queries
 * and the relay's lease; LISTEN, migrations and change capture stay on postgres.js.
 */
export interface PgClient {
  readonly kind: "postgres.js" | "bun";
  /** drizzle over the pool, for reads. */
  readonly db: PgDatabase<never>;
  /** One statement with `$n` parameters; int8 values come back as JS numbers. */
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
  /** A connection of the pool to itself, for one transaction. */
  reserve(): Promise<PgReserved>;
  /** Closes the pool, letting queries in flight finish for up to `timeoutSeconds` (default 5). */
  end(timeoutSeconds?: number): Promise<void>;
}

/** A reserved connection: every `send` goes out at once, in call order (pipelined). */
export interface PgReserved {
  /** Sends the statement now; resolves with the rows it affected. */
  send(text: string, params?: readonly unknown[]): Promise<number>;
  release(): void;
}

/** Which client `storage.postgres.client = "auto"` means on the running runtime. */
export function resolvePgClient(setting: "auto" | "postgres.js" | "bun"): "postgres.js" | "bun" {
  const onBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  if (setting === "bun" && !onBun) throw new Error('storage.postgres.client: "bun" needs the Bun runtime; use "auto" or "postgres.js" on Node');
  return setting === "auto" ? (onBun ? "bun" : "postgres.js") : setting;
}

/** postgres.js `types` that read int8 as a JS number, as `bunSqlClient` does. */
export const int8AsNumber = { int8: { to: 20, from: [20], serialize: (x: unknown) => String(x), parse: (x: string) => Number(x) } } as never;

/** The postgres.js pool as a `PgClient` (created with `types: int8AsNumber`). */
export function postgresJsClient(sql: Sql): PgClient {
  return {
    kind: "postgres.js",
    db: drizzlePostgresJs({ client: sql }) as unknown as PgDatabase<never>,
    async query<Row>(text: string, params: readonly unknown[] = []) {
      return [...(await sql.unsafe(text, params as never[], { prepare: true }))] as Row[];
    },
    async reserve() {
      const t = await sql.reserve();
      return {
        // postgres.js sends a query once something subscribes to it: `.then` now, in call order.
        send: (text, params = []) => t.unsafe(text, params as never[], { prepare: true }).then((r) => r.count),
        release: () => t.release(),
      };
    },
    end: (timeoutSeconds = 5) => sql.end({ timeout: timeoutSeconds }),
  };
}

/**
 * A `Bun.sql` pool with the same connection settings as the postgres.js `options` (host, port,
 * database, role, `search_path`). int8 arrives as bigint and is handed out as a number, as
 * postgres.js is configured to do (ids, cents and milliseconds all fit 2^53).
 */
export async function bunSqlClient(options: Options<{}>, max: number): Promise<PgClient> {
  // Imported when first used, so Node never loads them; literal specifiers, so `bun build
  // --compile` bundles drizzle's driver into the binary.
  const { SQL } = (await import("bun")) as unknown as { SQL: new (o: Record<string, unknown>) => BunSql };
  const { drizzle } = await import("drizzle-orm/bun-sql");
  const sql = new SQL({
    hostname: options.host,
    port: options.port,
    database: options.database,
    username: options.username,
    ...(options.password !== undefined && { password: options.password }),
    max,
    bigint: true,
    ...(options.connection && { connection: options.connection }),
  });
  return {
    kind: "bun",
    db: drizzle({ client: sql as never }) as unknown as PgDatabase<never>,
    async query<Row>(text: string, params: readonly unknown[] = []) {
      const rows = (await sql.unsafe(text, params).catch(withSqlState)) as Array<Record<string, unknown>>;
      return rows.map(numbersForInt8) as Row[];
    },
    async reserve() {
      const t = await sql.reserve();
      return {
        send: (text, params = []) => t.unsafe(text, params).then((r) => r.count, withSqlState),
        release: () => t.release(),
      };
    },
    end: (timeoutSeconds = 5) => sql.close({ timeout: timeoutSeconds }),
  };
}

/** What this module uses of `Bun.SQL` (typed here so Node's type check needs no Bun types). */
interface BunSql {
  unsafe(text: string, params?: readonly unknown[]): Promise<unknown[] & { count: number }>;
  reserve(): Promise<BunSql & { release(): void }>;
  close(opts?: { timeout?: number }): Promise<void>;
}

/**
 * Bun.sql's errors carry the SQLSTATE in `errno` and a generic `code`; postgres.js's `code` is the
 * SQLSTATE, which is what the platform checks (unique violations, permissions).
 */
function withSqlState(err: unknown): never {
  const e = err as { errno?: unknown; code?: unknown } | null;
  if (e && typeof e.errno === "string" && /^[0-9A-Z]{5}$/.test(e.errno)) e.code = e.errno;
  throw err;
}

/** A raw row with its bigint (int8) values as numbers. */
function numbersForInt8(row: Record<string, unknown>): Record<string, unknown> {
  for (const k in row) if (typeof row[k] === "bigint") row[k] = Number(row[k]);
  return row;
}
