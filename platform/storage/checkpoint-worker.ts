/**
 * The checkpoint thread's program (see background-checkpoints.ts, ADR 0015).
 *
 * Plain JavaScript in a string, run with `new Worker(source, { eval: true })`: it imports only the
 * runtime's own modules, so it needs no file on disk and no extra entrypoint in the compiled
 * binary, and runs unchanged under Bun (`bun:sqlite`) and Node (better-sqlite3, whose resolved path
 * the main thread passes in — Node cannot load a TypeScript worker, and a bundler would rewrite a
 * `require` in TypeScript source).
 */

/** Int32 slots each registered file shares with the thread. */
export const Slot = {
  /** One of `State`. */
  state: 0,
  /** Bumped by the main thread after each commit. */
  commits: 1,
  /** Bumped by the thread after each checkpoint that copied frames. */
  checkpoints: 2,
} as const;
export const SLOTS = 3;

/** Life of a file's registration; only the transitions named here happen. */
export const State = {
  /** Sent, not yet picked up by the thread. Main may cancel: new -> closed. */
  new: 0,
  /** The thread holds its connection (thread: new -> open). */
  open: 1,
  /** Main asks the thread to close its connection (main: open -> closing). */
  closing: 2,
  /** The thread holds no connection, and never will again (thread: open/closing -> closed). */
  closed: 3,
} as const;

/** Checks every file at least this often even without a signal: writes not made through `SqliteConnection`'s `exec`/`run` (drizzle's own statements) signal nothing. */
export const IDLE_CHECK_MS = 1000;

/** What the thread posts to the main thread. */
export type CheckpointWorkerMessage = { type: "failed"; id: number; error: string };

/** What the main thread posts to the thread: a file to checkpoint. */
export interface CheckpointRegistration {
  id: number;
  /** Absolute path of the database file. */
  file: string;
  /** Checkpoint once the WAL holds this many frames not yet copied into the database. */
  pages: number;
  /** `SLOTS` Int32 slots (`Slot`). */
  slots: SharedArrayBuffer;
}

export const CHECKPOINT_WORKER_SOURCE = `"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const { openSync, readSync, closeSync } = require("node:fs");
const onBun = typeof Bun !== "undefined";
const Database = onBun ? require("bun:sqlite").Database : require(workerData.betterSqlite3);
const bell = new Int32Array(workerData.bell);
const files = new Map();

parentPort.on("message", (m) => {
  const slots = new Int32Array(m.slots);
  // Closed by the main thread before it got here: never open it.
  if (Atomics.compareExchange(slots, ${Slot.state}, ${State.new}, ${State.open}) !== ${State.new}) return;
  const f = { file: m.file, pages: m.pages, slots, seen: -1, db: undefined, checkpoint: undefined, shm: -1 };
  files.set(m.id, f);
  try {
    f.db = onBun ? new Database(m.file, { readwrite: true }) : new Database(m.file, { fileMustExist: true });
    // Preparing reads the schema, which waits for a lock another connection may hold a moment:
    // wait as the main connection does (better-sqlite3 waits 5 s by default; bun:sqlite not at
    // all, and a registration failed on "database is locked" in CI). A PASSIVE checkpoint
    // never waits on this handler.
    f.db.exec("PRAGMA busy_timeout = 5000");
    f.checkpoint = f.db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
    // Whatever an earlier run left in the WAL; also makes sure the WAL index exists.
    f.checkpoint.get();
    f.shm = openSync(m.file + "-shm", "r");
  } catch (err) {
    drop(m.id, f, err);
  }
});

// The WAL-index header at the start of the -shm file (sqlite.org/walformat.html, 2.2.1): two
// copies of 12 u32 in native byte order — [0] version 3007000, [4] mxFrame, the frames in the
// WAL — then [24] nBackfill, the frames already copied into the database. A writer updates the
// copies one after the other: when they differ, it is mid-update.
const header = new Uint32Array(34);
const headerBytes = new Uint8Array(header.buffer);

/** Frames in the WAL not yet checkpointed; 0 while a writer updates the header. */
function walPending(f) {
  if (readSync(f.shm, headerBytes, 0, 136, 0) < 136) throw new Error("the WAL index (" + f.file + "-shm) is shorter than its header");
  if (header[0] !== 3007000) {
    if (header[0] === 0) return 0;
    throw new Error("unknown WAL index version " + header[0] + " in " + f.file + "-shm");
  }
  for (let i = 0; i < 12; i++) if (header[i] !== header[12 + i]) return 0;
  const frames = header[4];
  const copied = header[24];
  return copied <= frames ? frames - copied : frames;
}

function visit(id, f, idle) {
  if (Atomics.load(f.slots, ${Slot.state}) === ${State.closing}) return drop(id, f);
  const commits = Atomics.load(f.slots, ${Slot.commits});
  if (commits === f.seen && !idle) return;
  f.seen = commits;
  try {
    if (walPending(f) < f.pages) return;
    // SQLite's default synchronous (FULL) on this connection: like NORMAL, a checkpoint syncs the
    // WAL before copying and the database file after.
    const r = f.checkpoint.get();
    if (r.busy === 0 && r.checkpointed > 0) Atomics.add(f.slots, ${Slot.checkpoints}, 1);
  } catch (err) {
    // Another connection holds a lock a moment (its own checkpoint, closing): try at the next wake-up.
    if (err && /^SQLITE_(BUSY|LOCKED)/.test(String(err.code))) return;
    drop(id, f, err);
  }
}

function drop(id, f, err) {
  files.delete(id);
  try {
    if (f.shm >= 0) closeSync(f.shm);
    // true: bun:sqlite finalizes the prepared statement and closes now, not once it is collected
    // (better-sqlite3 always does, and ignores the argument).
    if (f.db) f.db.close(true);
  } catch (closeErr) {
    err = err || closeErr;
  }
  if (err) parentPort.postMessage({ type: "failed", id, error: String((err && err.stack) || err) });
  Atomics.store(f.slots, ${Slot.state}, ${State.closed});
  Atomics.notify(f.slots, ${Slot.state});
}

(async () => {
  let rung = Atomics.load(bell, 0);
  for (;;) {
    const wait = Atomics.waitAsync(bell, 0, rung, ${IDLE_CHECK_MS});
    const woke = wait.async ? await wait.value : wait.value;
    rung = Atomics.load(bell, 0);
    for (const [id, f] of files) visit(id, f, woke === "timed-out");
  }
})().catch((err) => setTimeout(() => { throw err; }));
`;
