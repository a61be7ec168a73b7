import type { Logger } from "../observability/logger.ts";
import { outboxRowOf, type OutboxRow, type PlatformStorage } from "../storage/module-storage.ts";

/*
 * Why a visibility barrier: Postgres writes a transaction's commit record, flushes it — from then
 * on a walsender may decode and send it — and only afterwards makes the transaction visible to
 * other sessions. A relay that publishes a streamed row and marks it at once can run its UPDATE in
 * that gap: the row is not there yet, stays unmarked for ever (backlog, `settle()`, a republish
 * at the next start), and a "which of these are published?" query would take it for pruned.
 * Seen on this machine under load. Every outbox-writing transaction holds the module's outbox
 * lock (see the outbox triggers, ADR 0008) from its first outbox insert until after it became
 * visible, so waiting for that lock once is enough: every transaction whose commit was streamed
 * before is visible after it.
 */

/** A module's `selaras_outbox` as the WAL relay reads and marks it, through the module's own connection. */
export class OutboxTable {
  constructor(
    private readonly storage: Pick<PlatformStorage, "queryRaw">,
    /** The module's schema: the key of its outbox lock. */
    private readonly schema: string,
    private readonly logger: Logger,
  ) {}

  /** The highest `seq` visible now (0 when empty). */
  async maxSeq(): Promise<number> {
    const [row] = await this.storage.queryRaw<{ m: number | null }>("SELECT max(seq)::float8 AS m FROM selaras_outbox");
    return row?.m ?? 0;
  }

  /** Unpublished rows up to `through`, in `seq` order, at most `limit`. */
  async unpublished(through: number, limit: number): Promise<OutboxRow[]> {
    const rows = await this.storage.queryRaw<Record<string, unknown>>(
      `SELECT seq::float8 AS seq, event_id::text AS event_id, aggregate_id, type, payload, headers, created_at::float8 AS created_at
       FROM selaras_outbox WHERE published_at IS NULL AND seq <= ? ORDER BY seq LIMIT ?`,
      [through, limit],
    );
    return rows.map(outboxRowOf);
  }

  /**
   * The streamed `rows` not marked published yet. Published rows are a prefix of `seq`, so one
   * range query answers; after the barrier, a row that is not there was pruned (so published).
   */
  async notYetPublished(rows: readonly OutboxRow[]): Promise<OutboxRow[]> {
    const seqs = rows.map((r) => r.seq);
    await this.visibilityBarrier();
    const open = await this.storage.queryRaw<{ seq: number }>("SELECT seq::float8 AS seq FROM selaras_outbox WHERE seq BETWEEN ? AND ? AND published_at IS NULL", [
      Math.min(...seqs),
      Math.max(...seqs),
    ]);
    const unpublished = new Set(open.map((r) => r.seq));
    return rows.filter((r) => unpublished.has(r.seq));
  }

  /**
   * Marks every unpublished row up to `through` (all committed, and ordered before it) as published
   * at `at`. One statement, which also says whether row `through` was visible to it (a
   * data-modifying CTE runs whether or not it is read, in the statement's one snapshot); if not
   * (the gap between commit and visibility), waits at the barrier and marks again.
   */
  async markPublished(through: number, at: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const [row] = await this.storage.queryRaw<{ visible: boolean }>(
        `WITH marked AS (UPDATE selaras_outbox SET published_at = ? WHERE seq <= ? AND published_at IS NULL RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM selaras_outbox WHERE seq = ?) AS visible`,
        [at, through, through],
      );
      if (row?.visible) return;
      if (attempt > 1) {
        // Visible to nobody even after the barrier: deleted by hand. Nothing left to mark.
        this.logger.warn("outbox row to mark published is gone", { schema: this.schema, seq: through });
        return;
      }
      await this.visibilityBarrier();
    }
  }

  /** Rows unpublished now: the highest `seq` among them (undefined when none). */
  async lastUnpublished(): Promise<number | undefined> {
    const [row] = await this.storage.queryRaw<{ m: number | null }>("SELECT max(seq)::float8 AS m FROM selaras_outbox WHERE published_at IS NULL");
    return row?.m ?? undefined;
  }

  /** Whether row `seq` is still unpublished. */
  async isUnpublished(seq: number): Promise<boolean> {
    return (await this.storage.queryRaw("SELECT 1 AS one FROM selaras_outbox WHERE seq = ? AND published_at IS NULL", [seq])).length > 0;
  }

  /**
   * Waits until every outbox-writing transaction whose commit is already in the WAL is visible:
   * takes the module's outbox lock (shared, so relays do not queue behind each other) for the
   * instant of one statement.
   */
  async visibilityBarrier(): Promise<void> {
    await this.storage.queryRaw("SELECT pg_advisory_xact_lock_shared(hashtext('selaras.outbox'), hashtext(?)) IS NULL AS waited", [this.schema]);
  }
}
