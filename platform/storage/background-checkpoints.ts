import { createRequire } from "node:module";
import { resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { describeError, type Logger } from "../observability/logger.ts";
import { CHECKPOINT_WORKER_SOURCE, Slot, SLOTS, State, type CheckpointRegistration, type CheckpointWorkerMessage } from "./checkpoint-worker.ts";

/**
 * The main connection's own `wal_autocheckpoint` while the thread checkpoints, as a multiple of
 * the configured pages: a backstop, so a thread that died unnoticed or fell behind still cannot
 * let the WAL grow without bound.
 */
export const BACKSTOP_FACTOR = 10;

/** Commits between two wake-ups of the thread (see `committed`). */
const RING_EVERY = 8;

/** The longest `close()` blocks for the thread to let go of the file (it answers within one checkpoint). */
const CLOSE_WAIT_MS = 5000;

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** One registered file, as its main connection drives it. */
export interface BackgroundCheckpoints {
  /** Tells the thread a commit happened (a few atomic operations, no message). */
  committed(): void;
  /** Checkpoints the thread ran that copied frames, so far. */
  readonly checkpoints: number;
  /** Closes the thread's connection to the file — before the main connection closes, so that one can still delete the WAL. Idempotent. */
  close(): void;
}

/** What the thread needs to know about a file, and how to hand it back to inline checkpoints. */
export interface CheckpointedFile {
  file: string;
  /** Checkpoint once the WAL holds this many uncopied frames (`sqlite.walAutocheckpointPages`). */
  pages: number;
  /** Where a failure is logged; stderr without one. */
  logger?: Logger;
  /** Sets the main connection's `wal_autocheckpoint` back to `pages` (the thread stopped). */
  restoreInline(): void;
}

/**
 * Hands `file`'s WAL checkpoints to the process's checkpoint thread, started with the first file
 * and ended with the last. The caller has set its own `wal_autocheckpoint` to the backstop
 * (`pages * BACKSTOP_FACTOR`) and calls `committed()` after each commit.
 */
export function checkpointInBackground(file: CheckpointedFile): BackgroundCheckpoints {
  current ??= new CheckpointThread();
  return current.add(file);
}

/** The process's checkpoint thread, while one runs (diagnostics and tests). */
export interface CheckpointThreadInfo {
  /** Files registered with it. */
  readonly files: number;
  /** Resolves when the thread has ended, however. */
  readonly exited: Promise<void>;
  /** Ends the thread at once, as a crash would: every file goes back to inline checkpoints (tests). */
  kill(): Promise<void>;
}

/** The running checkpoint thread, or undefined when no file is registered. */
export function checkpointThread(): CheckpointThreadInfo | undefined {
  return current;
}

// One thread per process for every file, not one per file or per platform: each thread is a whole
// JS runtime, and its work is a few ms per checkpoint. So this is process state, like the thread
// itself — two platforms in one process share it. Set while a file is registered (ADR 0015).
let current: CheckpointThread | undefined;

class CheckpointThread implements CheckpointThreadInfo {
  readonly #bell = new Int32Array(new SharedArrayBuffer(4));
  readonly #files = new Map<number, FileCheckpoints>();
  readonly #worker: Worker;
  readonly exited: Promise<void>;
  #nextId = 1;
  /** Terminated by us, or failed: its exit is no news. */
  #ended = false;

  constructor() {
    const driver = "better-sqlite3"; // in a variable: the compiled binary must not bundle it
    const workerData = { bell: this.#bell.buffer, betterSqlite3: isBun ? undefined : createRequire(import.meta.url).resolve(driver) };
    this.#worker = new Worker(CHECKPOINT_WORKER_SOURCE, { eval: true, workerData });
    this.exited = new Promise((done) => this.#worker.once("exit", () => done()));
    this.#worker.on("message", (m: CheckpointWorkerMessage) => this.#failed(m.id, m.error));
    this.#worker.on("error", (err) => this.#fail(err));
    this.#worker.on("exit", (code) => this.#fail(new Error(`the checkpoint thread exited with code ${code}`)));
    // After the listeners: adding a "message" listener refs the worker again (Bun and Node).
    this.#worker.unref();
  }

  get files(): number {
    return this.#files.size;
  }

  add(file: CheckpointedFile): FileCheckpoints {
    const id = this.#nextId++;
    const f = new FileCheckpoints(this.#bell, file);
    this.#files.set(id, f);
    f.removed = () => this.#remove(id);
    const registration: CheckpointRegistration = { id, file: resolve(file.file), pages: file.pages, slots: f.slots.buffer as SharedArrayBuffer };
    this.#worker.postMessage(registration);
    return f;
  }

  async kill(): Promise<void> {
    await this.#worker.terminate();
  }

  #remove(id: number): void {
    this.#files.delete(id);
    if (this.#files.size > 0 || this.#ended) return;
    this.#ended = true;
    if (current === this) current = undefined;
    void this.#worker.terminate();
  }

  /** The thread gave up one file (it could not open or read it): that file checkpoints inline again. */
  #failed(id: number, error: string): void {
    const f = this.#files.get(id);
    if (!f) return;
    log(f.logger, "error", "background WAL checkpoints of a file stopped: its commits checkpoint inline again", { file: f.file, error });
    f.detach();
  }

  /** The thread died: every file checkpoints inline again; logged once. */
  #fail(err: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (current === this) current = undefined;
    const files = [...this.#files.values()];
    this.#files.clear();
    log(files.find((f) => f.logger)?.logger, "error", "the background WAL checkpoint thread stopped: commits checkpoint inline again", { files: files.map((f) => f.file), error: describeError(err) });
    for (const f of files) f.detach();
    void this.#worker.terminate();
  }
}

class FileCheckpoints implements BackgroundCheckpoints {
  readonly slots = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  readonly file: string;
  readonly logger: Logger | undefined;
  removed = () => {};
  #detached = false;

  constructor(
    private readonly bell: Int32Array,
    private readonly spec: CheckpointedFile,
  ) {
    this.file = spec.file;
    this.logger = spec.logger;
  }

  committed(): void {
    if (this.#detached) return;
    // Waking the thread costs the committer a futex syscall: every RING_EVERY commits is enough
    // (each commit writes a page or more, the threshold is hundreds; the thread also looks once a
    // second, and the backstop bounds the rest).
    if ((Atomics.add(this.slots, Slot.commits, 1) + 1) % RING_EVERY === 0) this.#ring();
  }

  get checkpoints(): number {
    return Atomics.load(this.slots, Slot.checkpoints);
  }

  close(): void {
    if (this.#detached) return;
    this.#detached = true;
    // Not picked up yet: cancelled, the thread will never open it. Else ask, and wait for the answer.
    if (Atomics.compareExchange(this.slots, Slot.state, State.new, State.closed) !== State.new) {
      if (Atomics.compareExchange(this.slots, Slot.state, State.open, State.closing) === State.open) {
        this.#ring();
        if (Atomics.wait(this.slots, Slot.state, State.closing, CLOSE_WAIT_MS) === "timed-out") {
          log(this.logger, "warn", "the checkpoint thread did not close its connection in time; the WAL stays until the next start", { file: this.file });
        }
      }
    }
    this.logger?.debug("background WAL checkpoints", { file: this.file, checkpoints: this.checkpoints });
    this.removed();
  }

  /** Back to inline checkpoints on the main connection; the thread is gone or let go of the file. */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    try {
      this.spec.restoreInline();
    } catch (err) {
      log(this.logger, "error", "could not restore wal_autocheckpoint", { file: this.file, error: describeError(err) });
    }
    this.removed();
  }

  #ring(): void {
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
  }
}

function log(logger: Logger | undefined, level: "warn" | "error", msg: string, fields: Record<string, unknown>): void {
  if (logger) logger[level](msg, fields);
  else process.stderr.write(`${msg} ${JSON.stringify(fields)}\n`);
}
