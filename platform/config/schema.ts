// Namespace import: under `bun --bun vitest`, zod's named `z` export resolves to undefined.
import * as z from "zod";
import { PREFIX_PATTERN } from "../bus/nats/names.ts";

// Strict objects at every level: a misspelt key in a config file must fail loudly instead of
// silently leaving the default in place. Groups use `.prefault({})` so that their own keys'
// defaults apply when the group is absent or only partly given (`.default({})` would skip them).

const http = z
  .strictObject({
    maxBodyBytes: z.int().positive().default(1_048_576).describe("Largest request body accepted, in bytes; a larger one is rejected."),
    idleTimeoutSeconds: z
      .int()
      .min(0)
      .max(255)
      .default(30)
      .describe("Seconds a keep-alive connection may stay idle (Bun.serve allows 0..255, 0 = never). Bun's own 10 s default closes connections that clients still hold in their pools."),
  })
  .prefault({})
  .describe("HTTP server (REST, Connect, gRPC-Web).");

const retry = z
  .strictObject({
    maxAttempts: z
      .int()
      .min(1)
      .max(10)
      .default(3)
      .describe("Attempts of a remote call in all (1 = never retry). Only failures that are safe to retry are retried: see docs/adr/0007-topology-and-remote-calls.md."),
    initialDelayMs: z.int().positive().default(50).describe("Delay before the first retry, in ms; it grows exponentially, with jitter."),
    maxDelayMs: z.int().positive().default(1000).describe("Longest delay between two attempts, in ms. No retry starts after the call's deadline."),
  })
  .prefault({})
  .describe("Retries of calls to modules in other processes.");

const breaker = z
  .strictObject({
    threshold: z.int().min(1).default(5).describe("Consecutive failed attempts (unreachable, Unavailable, DeadlineExceeded) after which calls to that process fail at once with Unavailable."),
    halfOpenAfterMs: z.int().positive().default(1000).describe("How long an open circuit fails calls at once before one trial call may go through, in ms."),
  })
  .prefault({})
  .describe("Circuit breaker, one per remote process.");

const rpc = z
  .strictObject({
    timeoutMs: z.int().positive().default(5000).describe("Deadline of a module-to-module RPC call when the caller sets none, in ms; a remote call's retries share it."),
    retry,
    breaker,
  })
  .prefault({})
  .describe("Module-to-module RPC.");

/** Keys a process of a topology may set for itself; everything else is shared by the processes. */
export const PROCESS_OVERRIDES = ["port", "host", "dataDir", "logLevel", "serviceName", "http", "grpc", "rpc", "outbox", "sqlite", "shutdown", "threads"] as const;

// The override values are validated as the process's own configuration (with their keys' real
// schemas and error messages) by loadConfig, so they are only `unknown` here.
const processEntry = z.strictObject({
  modules: z.array(z.string().min(1), "expected an array of module names").min(1, "expected at least one module"),
  url: z.url({ protocol: /^https?$/, error: "expected an http(s) URL such as http://orders:3000" }).optional(),
  port: z.unknown().optional(),
  host: z.unknown().optional(),
  dataDir: z.unknown().optional(),
  logLevel: z.unknown().optional(),
  serviceName: z.unknown().optional(),
  http: z.unknown().optional(),
  grpc: z.unknown().optional(),
  rpc: z.unknown().optional(),
  outbox: z.unknown().optional(),
  sqlite: z.unknown().optional(),
  shutdown: z.unknown().optional(),
  threads: z.unknown().optional(),
} satisfies Record<(typeof PROCESS_OVERRIDES)[number] | "modules" | "url", z.ZodType>);

const topology = z
  .strictObject({
    processes: z
      .record(z.string().regex(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, "expected a kebab-case process name"), processEntry)
      .default({})
      .describe(
        'The processes of a split topology, by name: {"orders": {"modules": ["orders"], "url": "http://orders:3000", "port": 3000, "dataDir": "/var/lib/orders"}}. `modules` lists what the process hosts; `url` is where the other processes reach it (needed when they call its modules); any of port, host, dataDir, logLevel, serviceName, http, grpc, rpc, outbox, sqlite, shutdown, threads override the shared value for that process. Run one with --process NAME. Empty: every module in one process.',
      ),
  })
  .prefault({})
  .describe("Which process hosts which modules (see README, Topology).");

const grpc = z
  .strictObject({
    port: z
      .int()
      .min(0)
      .max(65_535)
      .optional()
      .describe("Port of the native gRPC server (HTTP/2 without TLS) that serves the same Connect-RPC services as the HTTP port, e.g. 50051; 0 picks a free port. Unset (the default): no gRPC server. Never derived from port, so processes sharing a machine cannot collide by accident."),
    host: z.string().min(1).optional().describe("Interface the gRPC server listens on; unset: the same as host."),
  })
  .prefault({})
  .describe("Native gRPC over HTTP/2 on a second port (Bun.serve has no HTTP/2; the HTTP port serves Connect and gRPC-Web).");

const outbox = z
  .strictObject({
    batchSize: z.int().min(1).max(10_000).default(500).describe("Outbox rows the relay publishes per batch."),
    retentionHours: z.number().nonnegative().default(168).describe("Hours a published outbox row is kept before it is pruned."),
    pruneIntervalMs: z.int().positive().default(60_000).describe("How often published outbox rows are pruned, in ms."),
    relay: z
      .enum(["poll", "cdc"])
      .default("poll")
      .describe(
        'How the relay finds committed outbox rows. "poll": it reads the outbox table, woken by every commit (LISTEN/NOTIFY on Postgres). "cdc" (storage.kind = "postgres" only, and wal_level = logical on the server): it streams them from the WAL through a permanent logical replication slot per publishing module, <schema>_outbox, as the role of cdc.postgres.url (see docs/adr/0013-outbox-relay-from-the-wal.md).',
      ),
  })
  .prefault({})
  .describe("Transactional outbox and its relay.");

const nats = z
  .strictObject({
    servers: z
      .array(z.string().min(1))
      .min(1)
      .default(["nats://127.0.0.1:4222"])
      .describe("NATS server URLs (nats://[user:password@]host:port); the client connects to any of them and learns the rest of a cluster."),
    prefix: z
      .string()
      .regex(PREFIX_PATTERN, "lower-case letters, digits, _ and -, starting with a letter")
      .default("selaras")
      .describe("Lower-case letters, digits, _ and -, starting with a letter. The first token of every subject (<prefix>.events.<type>.<partition>) and, upper-cased, of every stream name: deployments sharing a server use different prefixes."),
    partitions: z
      .int()
      .min(1)
      .max(64)
      .default(4)
      .describe("Aggregates are hashed onto this many partitions, one stream per proto package and partition. Each partition of a subscription is read in order by one instance at a time (the holder of its lease), in batches: partitions spread a subscription's work over its instances. Change it only with every consumer caught up: a start with another count is refused, naming them, while a consumer still has events in the streams of the old count."),
    duplicateWindowSeconds: z
      .int()
      .positive()
      .default(120)
      .describe("How long JetStream remembers an event id (Nats-Msg-Id) to drop a republished copy, e.g. a relay retry after a crash; the inbox absorbs later copies."),
    ackWaitSeconds: z
      .int()
      .positive()
      .default(30)
      .describe("How long a delivered event may stay unacknowledged (a consumer process died mid-event) before NATS delivers it again."),
    maxAckPending: z
      .int()
      .min(1)
      .max(10_000)
      .default(512)
      .describe("Events delivered to a partition's reader and not yet acknowledged: the window it batches from (bus.batchSize at a time)."),
    leaseSeconds: z
      .int()
      .min(1)
      .max(300)
      .default(10)
      .describe("A partition's reader renews its lease every third of this; a lease not renewed for this long expires, and a standby instance takes the partition over. How long a killed reader's partitions wait. Every process of a deployment must use the same value (the first one creates the lease bucket with it)."),
    requestTimeoutMs: z.int().positive().default(5000).describe("How long to wait for a publish acknowledgement or a JetStream API reply, in ms."),
    reconnectWaitMs: z.int().positive().default(250).describe("Pause between reconnection attempts after the connection to NATS was lost, in ms."),
    replicas: z.int().min(1).max(5).default(1).describe("Replicas of each stream in a clustered NATS (1 on a single server)."),
  })
  .prefault({})
  .describe('NATS JetStream bus, used when bus.kind is "nats" (see docs/adr/0006-nats-jetstream-bus.md).');

const bus = z
  .strictObject({
    kind: z
      .enum(["embedded", "nats"])
      .default("embedded")
      .describe('Event bus: "embedded" is a durable log in dataDir for one process; "nats" is NATS JetStream (bus.nats), shared by every process of a split topology.'),
    retentionHours: z.number().nonnegative().default(168).describe("Hours the bus keeps an event after it is published (replay window)."),
    maxDeliver: z.int().min(1).default(5).describe("Delivery attempts per event before it goes to the dead-letter queue."),
    backoffMs: z
      .array(z.int().positive())
      .min(1)
      .default([100, 500, 2000, 10_000])
      .describe("Delays before redelivery, in ms: retry n waits entry n; the last entry repeats."),
    batchSize: z.int().min(1).max(10_000).default(256).describe("Most events a consumer handles in one transaction: what arrived while the previous batch committed, up to this many."),
    lingerMs: z
      .record(z.string(), z.record(z.string(), z.int().min(0, "must be 0 ms or more").max(5000, "must be at most 5000 ms")))
      .default({})
      .describe(
        'How long a consumer\'s batch may wait for more events once its first one arrived, in ms, by module and subscription: {"order-history": {"projection": 50}} (Kafka\'s linger.ms). Fewer, larger transactions for consumers nobody waits on, at up to this much delay; a full batch (bus.batchSize) goes at once. Overrides the subscription\'s own default: the reference system lingers 20 ms in analytics.sales and notifications.outcomes, not in the saga nor in order-history.projection. 0 turns it off. A module or subscription this binary does not have is an error.',
      ),
    nats,
  })
  .prefault({})
  .describe("Event bus.");

const sqlite = z
  .strictObject({
    synchronous: z
      .enum(["NORMAL", "FULL"])
      .default("NORMAL")
      .describe("PRAGMA synchronous of the WAL-mode SQLite files. NORMAL: a committed transaction survives a process crash, but the last commits can be lost on power loss or an OS crash. FULL: fsync on every commit, survives power loss too, at fewer commits/s."),
    walAutocheckpointPages: z
      .int()
      .min(0)
      .default(1000)
      .describe("WAL pages (4 KiB) after which the WAL is checkpointed (copied into the database file, which is then fsynced). With checkpoint = \"inline\" this is PRAGMA wal_autocheckpoint: the commit that crosses it checkpoints, stalling the event loop meanwhile — larger means rarer but longer stalls (4000 measured relay lag p99 ~1 ms instead of ~3.5 ms, but client HTTP p99 ~20 ms instead of ~7 ms at 1,000 orders/s). 0 never checkpoints (the WAL grows without bound), in either mode."),
    checkpoint: z
      .enum(["background", "inline"])
      .default("background")
      .describe(
        'Who checkpoints the WAL. "background": one worker thread per process, with its own connection to each file, runs PRAGMA wal_checkpoint(PASSIVE) once the WAL holds walAutocheckpointPages uncopied pages, so commits on the event loop do not; the main connection keeps wal_autocheckpoint at 10 × walAutocheckpointPages as a backstop, and goes back to walAutocheckpointPages if the thread fails (logged). When commits go on during the thread\'s checkpoints (steady load), a busy file\'s WAL grows to that backstop before it starts over (ADR 0015). "inline": the commit that crosses walAutocheckpointPages checkpoints, on the event loop (see docs/adr/0015-background-wal-checkpoints.md).',
      ),
  })
  .prefault({})
  .describe("Embedded SQLite storage.");

const threads = z
  .strictObject({
    workers: z
      .array(z.array(z.string().min(1), "expected an array of module names").min(1, "expected at least one module"), "expected an array of module groups")
      .optional()
      .describe(
        'Groups of this process\'s modules that each run on a worker thread of their own (Bun only), e.g. [["payments", "inventory", "notifications"]]: the second core for modules that only consume events and call no module on another thread. The main thread keeps HTTP (it forwards their routes), the bus and every other module. [] keeps every module on the main thread. Unset: the binary decides — in one embedded process on 2 or more cores, the reference system puts payments, inventory and notifications on one thread (order-history and analytics when it hosts none of those three; see README, "Threads", and docs/adr/0017-embedded-modules-on-worker-threads.md).',
      ),
  })
  .prefault({})
  .describe("Module threads within one process.");

const shutdown = z
  .strictObject({
    drainMs: z
      .int()
      .min(0)
      .max(600_000)
      .default(0)
      .describe("On SIGTERM, how long to keep serving while /readyz already answers 503, so a load balancer stops routing here before the listener closes, in ms (e.g. 5000 behind Kubernetes). 0: close at once; in-flight requests still finish."),
    timeoutMs: z
      .int()
      .positive()
      .default(30_000)
      .describe("On SIGTERM, the most a graceful stop may take (drain, in-flight requests, relay flush, consumers) before the process exits with code 1, in ms."),
  })
  .prefault({})
  .describe("Graceful shutdown on SIGTERM/SIGINT.");

const admin = z
  .strictObject({
    token: z
      .string()
      .min(16, "must be at least 16 characters")
      .optional()
      .describe("Bearer token the operator endpoints (/admin/v1/…, e.g. what `bun run main.ts replay` calls) require. Unset (the default): they answer only clients on the loopback interface — set one when a proxy on the same host forwards outside requests."),
  })
  .prefault({})
  .describe("Operator endpoints of the HTTP server.");

const postgresUrl = z.string().regex(/^postgres(ql)?:\/\/[^\s]+$/, "expected a postgres:// connection URL such as postgres://user@host:5432/database");

const postgresStorage = z
  .strictObject({
    url: postgresUrl
      .default("postgres://postgres@127.0.0.1:5432/postgres")
      .describe("Administrator connection (a superuser, or a role with CREATEROLE that owns the database). Used at start to provision each module's schema and role (storage.postgres.provision) and, with its user replaced by the module's role, as every module's connection unless storage.postgres.moduleUrls names one."),
    schemaPrefix: z
      .string()
      .regex(/^[a-z][a-z0-9_]*$/, "lower-case letters, digits and _, starting with a letter")
      .max(30, "must be at most 30 characters")
      .default("selaras")
      .describe("Each module gets the schema and LOGIN role <schemaPrefix>_<module> (- becomes _); deployments sharing a database use different prefixes."),
    provision: z
      .boolean()
      .default(true)
      .describe("Create each module's schema and role and grant the role only its schema, at start (idempotent, safe with several processes). false: an operator ran the SQL of `bun run main.ts provision-sql` beforehand."),
    moduleUrls: z
      .record(z.string(), postgresUrl)
      .default({})
      .describe('A module\'s own connection URL, by module name — its own role (and password), and its own database or server if you like (database per service): {"orders": "postgres://selaras_orders:secret@db-orders:5432/orders"}. Provisioning then runs on that database with the administrator of storage.postgres.url\'s credentials.'),
    poolSize: z.int().min(1).max(100).default(2).describe("Connections of each module's pool: up to maxInFlight carry group-committed transactions, the others serve reads. Each module also holds one connection for LISTEN, and one for the relay lease once it has events to publish. Mind max_connections: a process of 8 modules holds about 8 × (poolSize + 2)."),
    client: z
      .enum(["auto", "bun", "postgres.js"])
      .default("auto")
      .describe('The client of each module\'s pool (reads and group commits): "bun" is Bun\'s native Bun.sql, "postgres.js" the postgres package; "auto" is "bun" under Bun and "postgres.js" on Node. The relay lease uses the same client; LISTEN, migrations and change capture use postgres.js either way (see docs/adr/0014-bun-sql-for-module-pools.md).'),
    maxInFlight: z.int().min(1).max(100).default(1).describe("Group-committed transactions of one module in flight at once (each on its own pool connection; capped at poolSize - 1 so reads always get one). While one commits, the next gathers the bodies that arrive. Worth raising (with poolSize) when the database is far away and round trips, not CPU, bound a module's commits; measured here with Postgres on the same 2 cores, 2 gained nothing."),
    maxBatch: z.int().min(1).max(10_000).default(256).describe("Most transaction bodies of one module group-committed in one Postgres transaction."),
  })
  .prefault({})
  .describe('PostgreSQL storage, used when storage.kind is "postgres" (see docs/adr/0008-postgres-storage.md).');

const storage = z
  .strictObject({
    kind: z
      .enum(["sqlite", "postgres"])
      .default("sqlite")
      .describe('Module storage: "sqlite" is one file per module in dataDir (settings: sqlite); "postgres" is one schema and one role per module (settings: storage.postgres).'),
    postgres: postgresStorage,
  })
  .prefault({})
  .describe("Where modules keep their data.");

const cdc = z
  .strictObject({
    heartbeatMs: z
      .int()
      .positive()
      .default(10_000)
      .describe("Postgres capture: how often the reader reports its position to the server and checks the connection, in ms; an idle slot keeps at most about this much WAL."),
    postgres: z
      .strictObject({
        url: postgresUrl
          .optional()
          .describe("The role that sets up each captured module's publication and slot and streams it — a superuser, or a role with REPLICATION that is a member of the module's role (owns its tables); its user and password are used on the module's database (host and database as for the module's storage). Unset: the administrator of storage.postgres.url."),
      })
      .prefault({})
      .describe("Change data capture on Postgres."),
  })
  .prefault({})
  .describe("Change data capture of the tables modules declare in `captures` (see platform/cdc/README.md): from the WAL on Postgres, by triggers on SQLite.");

/** The whole platform configuration; see `configHelp()` for every key with its env var. */
export const PlatformConfigSchema = z.strictObject({
  port: z.int().min(0).max(65_535).default(3000).describe("HTTP port for REST, Connect-RPC and gRPC-Web; 0 picks a free port."),
  host: z.string().min(1).default("0.0.0.0").describe("Interface the HTTP server listens on."),
  dataDir: z.string().min(1).default("./data").describe("Directory of the embedded storage (one SQLite file per module)."),
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info").describe("Lowest level that is logged."),
  serviceName: z.string().min(1).default("selaras").describe("Service name in logs, traces and metrics."),
  process: z
    .string()
    .min(1)
    .optional()
    .describe("Which process of topology.processes this one is; it hosts only that process's modules. Required with a topology, an error without one."),
  http,
  rpc,
  grpc,
  outbox,
  bus,
  storage,
  sqlite,
  shutdown,
  threads,
  admin,
  cdc,
  topology,
  modules: z
    .record(z.string(), z.unknown())
    .default({})
    .describe("Per-module settings keyed by module name; each module validates its own slice with its own schema."),
});

/** The validated configuration, with every default filled in. */
export type PlatformConfig = z.output<typeof PlatformConfigSchema>;
