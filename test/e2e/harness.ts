/**
 * End-to-end harness: runs the real binary (`bun main.ts`) as a child process on a temp data dir
 * and talks to it over real HTTP.
 *
 * The e2e suites run in the Bun pass of `bun run test` only (`describe.skipIf(!isBun)`): the
 * server under test is the same Bun child process whichever runtime runs vitest, so running the
 * files under Node as well would only double the wall time. Running them under Bun also lets a
 * test open a module's SQLite file read-only with `bun:sqlite` (see `tableCounts`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deleteStreams, listStreams, randomPrefix, SHARED_NATS, streamMessageCounts } from "../support/nats-server.ts";
import { dropPgPrefix, pgConnect, pgStorageConfig } from "../support/postgres.ts";

/** True when vitest itself runs on Bun (`bun --bun vitest`). */
export const isBun = typeof (process.versions as Record<string, string | undefined>).bun === "string";

/** Repository root (where main.ts lives). */
export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** A fresh, empty data dir for a server. */
export function tempDir(prefix = "selaras-e2e-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface StartOptions {
  /** Data dir to use; a fresh temp dir when omitted. */
  dataDir?: string;
  /** Extra environment variables for the child. */
  env?: Record<string, string>;
  /** Extra command-line arguments, after the harness's own. */
  args?: string[];
  /**
   * Pass `--port 0 --data-dir <dataDir>` (default true). False leaves port and data dir to the
   * config file (a process of a topology); `dataDir` is then only recorded.
   */
  defaultArgs?: boolean;
  /** Script run by `bun`, relative to the repo root; default `main.ts`. */
  entry?: string;
  /**
   * A compiled binary (`bun run build`) to run instead of `bun <entry>`, from its own directory —
   * which has no node_modules, so the binary must carry everything.
   */
  executable?: string;
  /** How long to wait for the `listening` log line, in ms. */
  startTimeoutMs?: number;
}

export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:43121`. */
  readonly url: string;
  readonly port: number;
  /** The native gRPC port, when the server runs one (`--set grpc.port=0`). */
  readonly grpcPort?: number;
  readonly dataDir: string;
  readonly proc: ChildProcess;
  /** Every stdout line so far (JSON log lines). */
  readonly logs: string[];
  /** Every stderr line so far. */
  readonly stderr: string[];
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal (e.g. `SIGKILL` to simulate a crash) and resolves once the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Graceful stop: SIGTERM, wait for exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Parsed JSON log entries (non-JSON lines skipped). */
  entries(): Array<Record<string, unknown>>;
}

// Children still alive, so a crashing test run never leaves servers behind (see the exit hook).
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

function tail(lines: readonly string[], n = 20): string {
  return lines.slice(-n).join("\n");
}

/** Splits a stream into lines, calling `onLine` for each complete one. */
function lineReader(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  stream.on("end", () => {
    if (buf) onLine(buf);
  });
}

/**
 * Starts `bun main.ts --port 0 --data-dir <dir> --log-level info` and resolves once it logs
 * `listening`. Fails with the tail of stdout and stderr when it exits or does not listen in time.
 * @example const srv = await startServer(); await fetch(`${srv.url}/healthz`); await srv.stop();
 */
export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const dataDir = opts.dataDir ?? tempDir();
  // SELARAS_* from the developer's shell must not change what the test runs against.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SELARAS_") && k !== "PORT" && k !== "HOST") env[k] = v;
  Object.assign(env, opts.env);
  const entry = opts.entry ?? "main.ts";
  const own = opts.defaultArgs === false ? [] : ["--port", "0", "--data-dir", dataDir];
  const args = [...own, "--log-level", "info", ...(opts.args ?? [])];
  const proc = opts.executable
    ? spawn(opts.executable, args, { cwd: dirname(opts.executable), env, stdio: ["ignore", "pipe", "pipe"] })
    : spawn("bun", [entry, ...args], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  live.add(proc);
  const logs: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // "close", not "exit": it comes after stdout and stderr are drained, so the logs are complete.
    proc.once("close", (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    });
  });
  // A spawn failure (bun not on PATH) surfaces as an "error" event, not an exit.
  const spawnError = new Promise<Error>((resolve) => proc.once("error", resolve));

  let onListening: (v: { port: number; url: string; grpcPort?: number }) => void = () => {};
  const listening = new Promise<{ port: number; url: string; grpcPort?: number }>((r) => (onListening = r));
  lineReader(proc.stdout!, (line) => {
    logs.push(line);
    if (!line.includes('"listening"')) return;
    try {
      const e = JSON.parse(line) as { msg?: string; port?: number; url?: string; grpcPort?: number };
      if (e.msg === "listening" && typeof e.port === "number") onListening({ port: e.port, url: e.url ?? `http://127.0.0.1:${e.port}`, grpcPort: e.grpcPort });
    } catch {
      // not a log entry
    }
  });
  lineReader(proc.stderr!, (line) => stderr.push(line));

  const timeoutMs = opts.startTimeoutMs ?? 20_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)));
  const first = await Promise.race([listening, exited.then((e) => ({ exited: e })), spawnError.then((err) => ({ err })), timeout]);
  clearTimeout(timer);
  if (first === "timeout" || "exited" in first || "err" in first) {
    proc.kill("SIGKILL");
    await Promise.race([exited, spawnError]);
    const why = first === "timeout" ? `did not log "listening" within ${timeoutMs} ms` : "exited" in first ? `exited early (code ${first.exited.code}, signal ${first.exited.signal})` : `could not be spawned: ${first.err.message}`;
    throw new Error(`server ${why}\n--- stdout tail ---\n${tail(logs)}\n--- stderr tail ---\n${tail(stderr)}`);
  }
  const { port, url, grpcPort } = first;

  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return exited;
  };
  return {
    url,
    port,
    grpcPort,
    dataDir,
    proc,
    logs,
    stderr,
    exited,
    kill,
    async stop(stopTimeoutMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill("SIGTERM");
      let t: ReturnType<typeof setTimeout> | undefined;
      const forced = new Promise<void>((r) => (t = setTimeout(r, stopTimeoutMs)));
      const res = await Promise.race([exited, forced.then(() => undefined)]);
      clearTimeout(t);
      if (res) return res;
      return kill("SIGKILL");
    },
    entries() {
      const out: Array<Record<string, unknown>> = [];
      for (const l of [...logs, ...stderr]) {
        try {
          out.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          // skip
        }
      }
      return out;
    },
  };
}

/**
 * Keeps track of the servers a test file starts and of its temp dirs, so `afterAll(pool.dispose)`
 * stops every one of them (SIGKILL if need be) and deletes the dirs even when a test failed.
 */
export function serverPool() {
  const servers = new Set<RunningServer>();
  const dirs = new Set<string>();
  return {
    async start(opts: StartOptions = {}): Promise<RunningServer> {
      if (!opts.dataDir) {
        opts = { ...opts, dataDir: tempDir() };
        dirs.add(opts.dataDir!);
      }
      const s = await startServer(opts);
      servers.add(s);
      void s.exited.then(() => servers.delete(s));
      return s;
    },
    /** A temp dir removed by `dispose`. */
    dir(): string {
      const d = tempDir();
      dirs.add(d);
      return d;
    },
    async dispose(): Promise<void> {
      await Promise.all([...servers].map((s) => s.stop(5_000)));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** A TCP port that was free a moment ago, for a server whose address must be known before it starts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A parsed HTTP reply. `body` is the JSON body, or the raw text when it is not JSON. */
export interface Reply<T = any> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
  readonly text: string;
}

export interface RequestOptions {
  /** Sent as JSON (`content-type: application/json`). */
  json?: unknown;
  /** Sent as is (for malformed or oversized bodies). */
  raw?: string | Uint8Array;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * JSON helpers bound to a base URL.
 * @example const r = await api(srv.url).post("/api/v1/products", { sku: "A", name: "a", priceCents: 1 });
 */
export function api(base: string) {
  async function request<T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<Reply<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | Uint8Array | undefined;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers["content-type"] ??= "application/json";
    } else if (opts.raw !== undefined) {
      body = opts.raw;
      headers["content-type"] ??= "application/json";
    }
    const res = await fetch(base + path, { method, headers, body: body as RequestInit["body"], signal: opts.signal });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, headers: res.headers, body: parsed as T, text };
  }
  return {
    request,
    get: <T = any>(path: string, opts?: RequestOptions) => request<T>("GET", path, opts),
    post: <T = any>(path: string, json?: unknown, opts?: RequestOptions) => request<T>("POST", path, { ...opts, json }),
    put: <T = any>(path: string, json?: unknown, opts?: RequestOptions) => request<T>("PUT", path, { ...opts, json }),
  };
}
export type Api = ReturnType<typeof api>;

/** One sample of a Prometheus text exposition. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses Prometheus text format into samples (comments skipped). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

/**
 * Resolves true once every outbox is drained and every consumer has caught up, as the server
 * itself reports on /metrics; undefined otherwise (for `waitFor`). The backlog gauge must be
 * present, so a server that stopped exporting it cannot look settled.
 */
export async function settledProbe(base: string): Promise<true | undefined> {
  const res = await fetch(`${base}/metrics`);
  if (res.status !== 200) return undefined;
  const samples = parseMetrics(await res.text());
  const backlog = samples.filter((s) => s.name === "selaras_outbox_backlog");
  const lag = samples.filter((s) => s.name === "selaras_consumer_lag_events");
  if (backlog.length === 0) return undefined;
  return [...backlog, ...lag].every((s) => s.value === 0) ? true : undefined;
}

/** A valid W3C traceparent with random ids. */
export function randomTraceparent(): { header: string; traceId: string } {
  const hex = (n: number) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");
  const traceId = hex(16);
  return { header: `00-${traceId}-${hex(8)}-01`, traceId };
}

/**
 * Opens a module's SQLite file read-only with bun:sqlite (Bun only: the e2e suites run in the Bun
 * pass) and runs `fn`. Read-only access cannot disturb the server, which may still be running.
 */
export async function withReadonlyDb<T>(file: string, fn: (db: import("bun:sqlite").Database) => T): Promise<T> {
  const specifier = "bun:sqlite"; // in a variable so Node never tries to resolve it
  const { Database } = (await import(specifier)) as typeof import("bun:sqlite");
  const db = new Database(file, { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Row count of every table in a SQLite file, by table name: a fingerprint of "was anything written". */
/** Row counts of every table of every Postgres schema named `<prefix>_…`, keyed `schema`. */
export async function pgTableCounts(prefix: string): Promise<Record<string, Record<string, number>>> {
  const admin = pgConnect();
  try {
    const like = `${prefix}\\_%`;
    const tables = await admin<{ s: string; t: string }[]>`SELECT schemaname AS s, tablename AS t FROM pg_tables WHERE schemaname LIKE ${like} ORDER BY 1, 2`;
    const out: Record<string, Record<string, number>> = {};
    for (const { s, t } of tables) {
      const [row] = await admin.unsafe<{ n: string }[]>(`SELECT count(*) AS n FROM "${s}"."${t}"`);
      (out[s] ??= {})[t] = Number(row!.n);
    }
    return out;
  } finally {
    await admin.end();
  }
}

export async function tableCounts(file: string): Promise<Record<string, number>> {
  return withReadonlyDb(file, (db) => {
    const tables = db.query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
    const out: Record<string, number> = {};
    for (const { name } of tables) out[name] = db.query<{ n: number }, []>(`SELECT count(*) AS n FROM "${name}"`).get()!.n;
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Topologies: the same suites run against one embedded process, one process on Postgres + NATS
// (config/single-postgres.json), and the three processes of config/split.json on Postgres + NATS
// (issue 3: "same tests, same assertions").
// ---------------------------------------------------------------------------------------------

/** The topologies every contract suite runs in. */
export const TOPOLOGIES = ["embedded", "threads", "postgres", "split"] as const;
export type TopologyKind = (typeof TOPOLOGIES)[number];

/**
 * The modules the `threads` topology runs on a module thread (threads.workers): every one that only
 * consumes events — more than the binary's default (payments, inventory, notifications), so read
 * models, their admin and their replay cross the port too.
 */
export const THREAD_MODULES = ["payments", "inventory", "notifications", "analytics", "order-history"] as const;

/** Every module of the platform, as the topology file names them. */
const ALL_MODULES = ["catalog", "customers", "orders", "payments", "inventory", "order-history", "notifications", "analytics"] as const;

/** REST resource (first segment after `/api/v1/`) → the module that serves it. */
const REST_RESOURCES: Readonly<Record<string, string>> = { products: "catalog", customers: "customers", orders: "orders", inventory: "inventory" };

/**
 * The module that serves a request path: REST resources by their first segment (the read models
 * under a customer go to their own modules: `/api/v1/customers/{id}/orders` to order-history,
 * `/api/v1/customers/{id}/notifications` to notifications), Connect/gRPC-Web paths by their proto
 * package (`/catalog.v1.CatalogService/GetProduct` → catalog). Undefined for process-level paths
 * (`/healthz`, `/readyz`, `/metrics`), which every process serves for itself.
 */
export function moduleOfPath(path: string): string | undefined {
  const p = path.split("?")[0]!;
  if (/^\/api\/v1\/customers\/[^/]+\/orders\/?$/.test(p)) return "order-history";
  if (/^\/api\/v1\/customers\/[^/]+\/notifications\/?$/.test(p)) return "notifications";
  const rest = /^\/api\/v1\/([^/]+)/.exec(p);
  if (rest) return REST_RESOURCES[rest[1]!] ?? rest[1];
  const rpc = /^\/([a-z_]+)\.v\d+\.[A-Za-z]+\//.exec(p);
  if (rpc) return rpc[1]!.replaceAll("_", "-");
  return undefined;
}

export interface RunningTopology {
  readonly kind: TopologyKind;
  /** The processes by name (`all` for the single-process topologies; core/orders/history for split). */
  readonly processes: Readonly<Record<string, RunningServer>>;
  /** Process name by module. */
  readonly placement: Readonly<Record<string, string>>;
  /** The bus prefix on NATS (undefined on the embedded bus). */
  readonly natsPrefix?: string;
  /** The Postgres schema/role prefix (undefined on SQLite). */
  readonly pgPrefix?: string;
  /** JSON helpers that send each request to the process serving its path (see `moduleOfPath`). */
  readonly api: Api;
  /** The process serving `path`; process-level paths go to the first process. */
  serverFor(path: string): RunningServer;
  /** Base URL of the process serving `path`. */
  urlFor(path: string): string;
  /** The process hosting `module`. */
  serverOf(module: string): RunningServer;
  /** Parsed log entries of every process, each tagged with `process`. */
  entries(): Array<Record<string, unknown>>;
  /** True once every process's outboxes are drained and its consumers caught up (for `waitFor`). */
  settled(): Promise<true | undefined>;
  /** `/metrics` of every process: samples labelled with `process`, and the texts joined. */
  metrics(): Promise<{ text: string; samples: Sample[]; contentTypes: string[]; statuses: number[] }>;
  /** Messages in each of this topology's NATS streams (`{}` on the embedded bus, whose log is a SQLite table). */
  streamCounts(): Promise<Record<string, number>>;
  /**
   * Row counts of every table of every module's storage, keyed `where/table`: each SQLite file in
   * each process's data dir, or each Postgres schema of this topology.
   */
  tableCounts(): Promise<Record<string, Record<string, number>>>;
  /** The topology file the processes run from (undefined on embedded), e.g. for `main.ts … dead-letters`. */
  readonly configFile?: string;
  /**
   * Starts process `name` again from the same topology file, data dir and port (embedded: a new
   * port), once the previous one has exited (after `kill` or `stop`); `processes[name]` and the routing then use the new one.
   */
  restart(name: string): Promise<RunningServer>;
  /** Stops every process, deletes temp dirs and the NATS streams of this topology's prefix. */
  stop(): Promise<void>;
}

export interface TopologyOptions {
  /** NATS server URL the topology uses instead of the shared one (e.g. a private `NatsServer`). */
  nats?: string;
  /**
   * Changes the parsed topology file before it is written (after ports, dirs, bus and storage are
   * set), e.g. `(c) => (c.bus.maxDeliver = 2)`. Ignored on embedded.
   */
  patch?: (config: Record<string, any>) => void;
  /** Run every process from this compiled binary (`bun run build`) instead of `bun main.ts`. */
  executable?: string;
}

/**
 * Starts `kind` once (call in `beforeAll`, stop in `afterAll`):
 * - `embedded`: one `bun main.ts` on embedded SQLite and the embedded bus, every module on the main thread (`threads.workers = []`);
 * - `threads`: the same with `THREAD_MODULES` on a module thread of their own (the binary's default on 2+ cores puts three of them there);
 * - `postgres`: `config/single-postgres.json`, one process on the test Postgres and the shared NATS;
 * - `split`: the three processes of `config/split.json` on the test Postgres and the shared NATS.
 * Config files are written to a temp file with free ports, temp data dirs, the test Postgres URL
 * and a random schema and stream prefix, all dropped by `stop()`.
 * @example const t = await startTopology("split"); await t.api.post("/api/v1/orders", {...}); await t.stop();
 */
export async function startTopology(kind: TopologyKind, opts: TopologyOptions = {}): Promise<RunningTopology> {
  const pool = serverPool();
  const natsServers = opts.nats ?? SHARED_NATS;
  const natsPrefix = kind === "embedded" || kind === "threads" ? undefined : randomPrefix();
  // Postgres identifiers: the NATS prefix is already lower-case letters and digits.
  const pgPrefix = natsPrefix;
  const processes: Record<string, RunningServer> = {};
  const placement: Record<string, string> = {};
  const startOpts: Record<string, StartOptions> = {};
  let configFile: string | undefined;
  const cleanup = async () => {
    await pool.dispose();
    if (pgPrefix) await dropPgPrefix(pgPrefix);
    if (!natsPrefix) return;
    await deleteStreams(natsServers, natsPrefix);
    const left = await listStreams(natsServers, natsPrefix);
    if (left.length > 0) throw new Error(`NATS streams left behind for prefix ${natsPrefix}: ${left.join(", ")}`);
  };
  try {
    if (kind === "embedded" || kind === "threads") {
      // The binary's default on 2+ cores is the threads topology; embedded pins one thread.
      const threads = ["--set", `threads.workers=${JSON.stringify(kind === "threads" ? [THREAD_MODULES] : [])}`];
      startOpts.all = { dataDir: pool.dir(), executable: opts.executable, args: threads };
      processes.all = await pool.start(startOpts.all);
      for (const m of ALL_MODULES) placement[m] = "all";
    } else {
      type TopologyFile = {
        bus: { nats: Record<string, unknown> };
        storage: Record<string, unknown>;
        topology: { processes: Record<string, { modules: string[]; port: number; url: string; dataDir: string }> };
      };
      const source = kind === "split" ? "config/split.json" : "config/single-postgres.json";
      const topology = JSON.parse(readFileSync(join(repoRoot, source), "utf8")) as TopologyFile;
      const dirs: Record<string, string> = {};
      for (const [name, p] of Object.entries(topology.topology.processes)) {
        const port = await freePort();
        dirs[name] = pool.dir();
        Object.assign(p, { port, url: `http://127.0.0.1:${port}`, dataDir: dirs[name] });
        for (const m of p.modules) placement[m] = name;
      }
      topology.bus.nats = { ...topology.bus.nats, servers: [natsServers], prefix: natsPrefix };
      topology.storage = pgStorageConfig(pgPrefix!);
      opts.patch?.(topology as unknown as Record<string, any>);
      const file = join(pool.dir(), "topology.json");
      writeFileSync(file, JSON.stringify(topology, null, 2));
      configFile = file;
      const names = Object.keys(topology.topology.processes);
      for (const name of names) startOpts[name] = { dataDir: dirs[name], defaultArgs: false, args: ["--config", file, "--process", name], executable: opts.executable };
      const started = await Promise.all(names.map((name) => pool.start(startOpts[name])));
      names.forEach((name, i) => (processes[name] = started[i]!));
    }
    // The threads topology must really run modules on a thread: readiness counts them.
    if (kind === "threads") {
      const checks = ((await (await fetch(`${processes.all!.url}/readyz`)).json()) as { checks?: { threads?: string } }).checks;
      if (checks?.threads !== "1 ok") throw new Error(`threads topology: /readyz reports no module thread (${JSON.stringify(checks)})`);
    }
    // The NATS topologies must really be on NATS under this run's prefix: start-up created its streams.
    if (natsPrefix && (await listStreams(natsServers, natsPrefix)).length === 0) throw new Error(`${kind} topology: no NATS stream with prefix ${natsPrefix} after start-up`);
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }
  const first = Object.values(processes)[0]!;
  const serverOf = (module: string): RunningServer => {
    const name = placement[module];
    if (!name) throw new Error(`no process of the ${kind} topology hosts module "${module}"`);
    return processes[name]!;
  };
  const serverFor = (path: string): RunningServer => {
    const m = moduleOfPath(path);
    return m === undefined ? first : serverOf(m);
  };
  const urlFor = (path: string) => serverFor(path).url;
  const routed = (method: string, path: string, opts?: RequestOptions) => api(urlFor(path)).request(method, path, opts);
  const routedApi: Api = {
    request: routed,
    get: (path, opts) => routed("GET", path, opts),
    post: (path, json, opts) => routed("POST", path, { ...opts, json }),
    put: (path, json, opts) => routed("PUT", path, { ...opts, json }),
  };
  return {
    kind,
    processes,
    placement,
    natsPrefix,
    pgPrefix,
    api: routedApi,
    serverFor,
    urlFor,
    serverOf,
    entries: () => Object.entries(processes).flatMap(([name, s]) => s.entries().map((e) => ({ ...e, process: name }))),
    settled: () => settledAcross(Object.values(processes).map((s) => s.url)),
    async metrics() {
      const texts: string[] = [];
      const samples: Sample[] = [];
      const contentTypes: string[] = [];
      const statuses: number[] = [];
      for (const [name, s] of Object.entries(processes)) {
        const res = await fetch(`${s.url}/metrics`);
        const text = await res.text();
        statuses.push(res.status);
        contentTypes.push(res.headers.get("content-type") ?? "");
        texts.push(text);
        for (const x of parseMetrics(text)) samples.push({ ...x, labels: { ...x.labels, process: name } });
      }
      return { text: texts.join("\n"), samples, contentTypes, statuses };
    },
    configFile,
    async restart(name) {
      const old = processes[name];
      if (!old) throw new Error(`no process "${name}" in the ${kind} topology`);
      if (old.proc.exitCode === null && old.proc.signalCode === null) throw new Error(`process "${name}" is still running: kill or stop it first`);
      // Same data dir; the topology file fixes the port (embedded: a new free port).
      const started = await pool.start(startOpts[name]!);
      processes[name] = started;
      return started;
    },
    streamCounts: async () => (natsPrefix ? streamMessageCounts(natsServers, natsPrefix) : {}),
    async tableCounts() {
      const out: Record<string, Record<string, number>> = {};
      for (const [name, srv] of Object.entries(processes)) {
        for (const f of readdirSync(srv.dataDir).filter((f) => f.endsWith(".db")).sort()) out[`${name}/${f}`] = await tableCounts(join(srv.dataDir, f));
      }
      if (pgPrefix) Object.assign(out, await pgTableCounts(pgPrefix));
      return out;
    },
    stop: cleanup,
  };
}

/**
 * `settledProbe` over several processes: true once, on every one of them, every outbox backlog and
 * consumer lag is 0; at least one process must export the backlog gauge.
 */
export async function settledAcross(bases: readonly string[]): Promise<true | undefined> {
  // Backlogs and lags are read one after the other, so a single reading can fall between two
  // steps of a flow (an event consumed, its reaction not yet committed): settled means two
  // readings in a row that are all zero and show the same published and consumed totals.
  const first = await settledReading(bases);
  if (first === undefined) return undefined;
  const second = await settledReading(bases);
  return second === first ? true : undefined;
}

/** All backlogs and lags zero: the published and consumed totals as a fingerprint; else undefined. */
async function settledReading(bases: readonly string[]): Promise<string | undefined> {
  let backlogSeen = false;
  const totals: number[] = [];
  for (const base of bases) {
    const res = await fetch(`${base}/metrics`);
    if (res.status !== 200) return undefined;
    const samples = parseMetrics(await res.text());
    const backlog = samples.filter((s) => s.name === "selaras_outbox_backlog");
    const lag = samples.filter((s) => s.name === "selaras_consumer_lag_events");
    backlogSeen ||= backlog.length > 0;
    if (![...backlog, ...lag].every((s) => s.value === 0)) return undefined;
    const sum = (name: string) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
    totals.push(sum("selaras_events_published_total"), sum("selaras_events_consumed_total"));
  }
  return backlogSeen ? totals.join(",") : undefined;
}
