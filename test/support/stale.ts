import type { Sql } from "postgres";
import { dropPgPrefix } from "./postgres.ts";

/**
 * Test prefixes carry their creation time: `<tag><seconds since the epoch, base 36>_<random>`,
 * e.g. `t_tp3u61_ceeaf1`. What a test run leaves behind on the shared servers when it is killed
 * (replication slots above all: each keeps WAL for ever, and the server allows only
 * `max_replication_slots` of them) can then be told apart from what a running test still uses.
 */
export function timedPrefix(tag: string, random: string): string {
  return `${tag}${Math.floor(Date.now() / 1000).toString(36)}_${random}`;
}

const TIMED = /^(t_|cdct_|cdcp_)([0-9a-z]{6})_([0-9a-z]+)/;
// Before prefixes carried a time: `t` + 12 hex digits. Nothing creates these any more.
const UNTIMED = /^(t[0-9a-f]{12})_/;

/** The prefix a name was created under, and when (epoch seconds; 0 for the old untimed ones). */
export function prefixOf(name: string): { prefix: string; born: number } | undefined {
  const timed = TIMED.exec(name);
  if (timed) return { prefix: `${timed[1]}${timed[2]}_${timed[3]}`, born: parseInt(timed[2]!, 36) };
  const untimed = UNTIMED.exec(name);
  return untimed ? { prefix: untimed[1]!, born: 0 } : undefined;
}

/**
 * Drops every slot, publication, schema and role of a test prefix older than `staleS` seconds
 * whose replication slots are all inactive. Returns the prefixes dropped.
 */
export async function sweepStalePrefixes(admin: Sql, staleS = 30 * 60): Promise<string[]> {
  const names = [
    ...(await admin<{ n: string; active: boolean }[]>`SELECT slot_name AS n, active FROM pg_replication_slots`),
    ...(await admin<{ n: string; active: boolean }[]>`SELECT pubname AS n, false AS active FROM pg_publication`),
    ...(await admin<{ n: string; active: boolean }[]>`SELECT nspname AS n, false AS active FROM pg_namespace`),
  ];
  const now = Date.now() / 1000;
  const stale = new Map<string, boolean>(); // prefix -> may drop
  for (const { n, active } of names) {
    const p = prefixOf(n);
    if (!p || now - p.born <= staleS) continue;
    stale.set(p.prefix, (stale.get(p.prefix) ?? true) && !active);
  }
  const dropped: string[] = [];
  for (const [prefix, may] of stale) {
    if (!may) continue;
    await dropPgPrefix(prefix);
    dropped.push(prefix);
  }
  return dropped;
}
