/**
 * The shared Postgres and NATS the Postgres phases run on: where they are, whether they answer,
 * the CPU their server processes use, and dropping exactly what one bench run created (the schemas,
 * roles, capture slots and publications `<prefix>_…`, the streams `<PREFIX>_…`). Copied in spirit from test/support, so the
 * bench does not depend on the test tree.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres, { type Sql } from "postgres";

/** The Postgres the bench provisions module schemas in (trust auth; needs CREATEROLE). */
export const BENCH_POSTGRES = process.env.SELARAS_BENCH_POSTGRES ?? process.env.SELARAS_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
/** The NATS (JetStream on) the bench creates its streams on. */
export const BENCH_NATS = process.env.SELARAS_BENCH_NATS ?? process.env.SELARAS_TEST_NATS ?? "nats://127.0.0.1:4222";

/** A prefix no other run uses: schemas and roles `<prefix>_…`, streams `<PREFIX>_…`. */
export function benchPrefix(): string {
  return `bench${randomBytes(5).toString("hex")}`;
}

function admin(): Sql {
  return postgres(BENCH_POSTGRES, { max: 1, onnotice: () => {}, connect_timeout: 5 });
}

/** Why the bench's Postgres or NATS cannot be used, or undefined when both answer. */
export async function infraProblem(): Promise<string | undefined> {
  const sql = admin();
  try {
    await sql`SELECT 1`;
  } catch (err) {
    return `Postgres not reachable at ${redact(BENCH_POSTGRES)} (${(err as Error).message})`;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  try {
    const nc = await connect({ servers: BENCH_NATS, timeout: 3000 });
    try {
      await jetstreamManager(nc);
    } finally {
      await nc.close();
    }
  } catch (err) {
    return `NATS JetStream not reachable at ${BENCH_NATS} (${(err as Error).message})`;
  }
  return undefined;
}

const redact = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");

/**
 * Drops every schema and role named `<prefix>_…`, ending the roles' sessions first — and the
 * change data capture slots and publications `<prefix>_…` (the capture of catalog.products creates
 * `<prefix>_catalog_cdc`): dropping the schemas leaves those, and a slot left behind keeps WAL for ever.
 */
export async function dropPgPrefix(prefix: string): Promise<{ schemas: string[]; roles: string[]; slots: string[]; publications: string[] }> {
  if (!/^bench[a-f0-9]+$/.test(prefix)) throw new Error(`not a bench prefix: ${prefix}`);
  const sql = admin();
  try {
    const like = `${prefix}\\_%`;
    const slots = await dropSlots(sql, like);
    const publications = (await sql<{ n: string }[]>`SELECT pubname AS n FROM pg_publication WHERE pubname LIKE ${like}`).map((r) => r.n);
    for (const p of publications) await sql.unsafe(`DROP PUBLICATION IF EXISTS "${p}"`);
    const schemas = (await sql<{ n: string }[]>`SELECT nspname AS n FROM pg_namespace WHERE nspname LIKE ${like}`).map((r) => r.n);
    const roles = (await sql<{ n: string }[]>`SELECT rolname AS n FROM pg_roles WHERE rolname LIKE ${like}`).map((r) => r.n);
    for (const s of schemas) await sql.unsafe(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    for (const r of roles) {
      // A lingering session of the role would block DROP ROLE.
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${r}`;
      await sql.unsafe(`DROP OWNED BY "${r}"; DROP ROLE IF EXISTS "${r}"`);
    }
    return { schemas, roles, slots, publications };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Drops the replication slots matching `like`, ending the walsender of an active one first (it lets go of the slot a moment later). */
async function dropSlots(sql: Sql, like: string): Promise<string[]> {
  const slots = await sql<{ n: string; pid: number | null }[]>`SELECT slot_name AS n, active_pid AS pid FROM pg_replication_slots WHERE slot_name LIKE ${like}`;
  for (const { n, pid } of slots) {
    if (pid) await sql`SELECT pg_terminate_backend(${pid})`;
    for (let attempt = 1; ; attempt++) {
      try {
        await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${n}`;
        break;
      } catch (err) {
        if (attempt >= 50) throw err; // still active after ~5 s
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  return slots.map((s) => s.n);
}

/** Deletes every stream whose name starts with `<PREFIX>_`; resolves with their names. */
export async function deleteStreams(prefix: string): Promise<string[]> {
  const nc = await connect({ servers: BENCH_NATS, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    const mine: string[] = [];
    for await (const name of jsm.streams.names()) if (name.startsWith(`${prefix.toUpperCase()}_`)) mine.push(name);
    for (const name of mine) await jsm.streams.delete(name);
    return mine;
  } finally {
    await nc.close();
  }
}

/** Message count of every stream of `prefix`. */
export async function streamCount(prefix: string): Promise<number> {
  const nc = await connect({ servers: BENCH_NATS, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    let n = 0;
    for await (const name of jsm.streams.names()) if (name.startsWith(`${prefix.toUpperCase()}_`)) n++;
    return n;
  } finally {
    await nc.close();
  }
}

const CLK_TCK = 100;

function cpuOfPid(pid: string | number): { comm: string; seconds: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), seconds: (Number(f[11]) + Number(f[12])) / CLK_TCK };
  } catch {
    return undefined; // gone, or not on Linux
  }
}

/** CPU seconds used so far, by pid. */
export type PidCpu = Record<number, number>;

/**
 * User+system CPU seconds used so far by the Postgres processes serving this run — the sessions of
 * the roles `<prefix>_…` and the server's background processes (WAL writer, checkpointer, …), not
 * other clients' sessions — and by every `nats-server` process; by pid, so a window can subtract
 * (`cpuDelta`). Undefined off Linux or when Postgres runs on another machine.
 */
export async function serviceCpuSeconds(prefix: string): Promise<{ postgres: PidCpu; nats: PidCpu } | undefined> {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  const sql = admin();
  let pgPids: number[];
  try {
    const like = `${prefix}\\_%`;
    pgPids = (await sql<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE usename LIKE ${like} OR backend_type <> 'client backend'`).map((r) => r.pid);
  } finally {
    await sql.end({ timeout: 1 });
  }
  const postgres: PidCpu = {};
  for (const pid of pgPids) {
    const c = cpuOfPid(pid);
    if (c?.comm === "postgres") postgres[pid] = c.seconds;
  }
  // Postgres on another machine: none of its pids is ours to read.
  if (Object.keys(postgres).length === 0) return undefined;
  const nats: PidCpu = {};
  for (const pid of pids) {
    const c = cpuOfPid(pid);
    if (c?.comm === "nats-server") nats[Number(pid)] = c.seconds;
  }
  return { postgres, nats };
}

/** CPU seconds used between two readings by the processes alive at the second (new ones from 0). */
export function cpuDelta(before: PidCpu, after: PidCpu): number {
  let t = 0;
  for (const [pid, s] of Object.entries(after)) t += s - (before[Number(pid)] ?? 0);
  return t;
}
