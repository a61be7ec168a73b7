/**
 * One process of the system under test: `bun main.ts` (or another entry) as a child process on a fresh data dir,
 * with helpers to read its Prometheus metrics and its CPU time. `system.ts` puts one or several
 * together into a topology.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseProm, type Sample } from "./prom.ts";

export interface Server {
  readonly url: string;
  readonly pid: number;
  readonly dataDir: string;
  /** A parsed scrape of /metrics. */
  scrape(): Promise<Sample[]>;
  /** User+system CPU seconds the server process has used so far (Linux /proc), or undefined. */
  cpuSeconds(): number | undefined;
  /** The last lines the server wrote (stdout and stderr), for error reports. */
  tail(): string;
  /** SIGKILL and delete the data dir, synchronously (on Ctrl-C). */
  kill(): void;
  stop(): Promise<void>;
}

const CLK_TCK = 100; // USER_HZ; 100 on every Linux this runs on

export interface ServerOptions {
  root: string;
  /** The script to run, relative to `root` (default `main.ts`). */
  entry?: string;
  timeoutMs?: number;
  /** Arguments to bun itself (before `main.ts`), e.g. `--cpu-prof`. */
  bunArgs?: string[];
  /**
   * Arguments to `main.ts` after `--data-dir <fresh dir> --log-level info`; default
   * `--port 0 --host 127.0.0.1` (a topology process gets `--config FILE --process NAME`).
   */
  args?: string[];
  /** Name in error messages (a topology's process name). */
  name?: string;
  /** Kill the server and delete its data dir on SIGINT/SIGTERM (default true; a topology does it for all its processes). */
  handleSignals?: boolean;
}

/** Starts the server and resolves once it logged `listening` (with the port it bound). */
export async function startServer(opts: ServerOptions): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), "selaras-bench-"));
  const args = opts.args ?? ["--port", "0", "--host", "127.0.0.1"];
  const proc = Bun.spawn([process.execPath, ...(opts.bunArgs ?? []), opts.entry ?? "main.ts", "--data-dir", dataDir, "--log-level", "info", ...args], {
    cwd: opts.root,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const lines: string[] = [];
  const keep = (l: string) => {
    lines.push(l);
    if (lines.length > 40) lines.shift();
  };
  let onListening: (port: number) => void = () => {};
  const listening = new Promise<number>((r) => (onListening = r));
  void pump(proc.stdout, (l) => {
    keep(l);
    if (!l.startsWith("{")) return;
    try {
      const entry = JSON.parse(l) as { msg?: string; port?: number };
      if (entry.msg === "listening" && typeof entry.port === "number") onListening(entry.port);
    } catch {
      // not a log line
    }
  });
  void pump(proc.stderr, keep);

  const tail = () => lines.join("\n");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), opts.timeoutMs ?? 30_000)));
  const outcome = await Promise.race([listening, proc.exited.then((code) => ({ exited: code })), timeout]);
  clearTimeout(timer);
  if (typeof outcome !== "number") {
    proc.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    const why = outcome === "timeout" ? "did not log `listening` in time" : `exited with code ${outcome.exited}`;
    throw new Error(`the server${opts.name ? ` ${opts.name}` : ""} ${why}; its last output:\n${tail()}`);
  }
  // Ctrl-C on the bench must not leave the server running or its data dir behind.
  const abandon = (signal: NodeJS.Signals) => {
    proc.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  const handleSignals = opts.handleSignals ?? true;
  if (handleSignals) {
    process.once("SIGINT", abandon);
    process.once("SIGTERM", abandon);
  }
  const url = `http://127.0.0.1:${outcome}`;
  return {
    url,
    pid: proc.pid,
    dataDir,
    async scrape() {
      const res = await fetch(`${url}/metrics`);
      if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
      return parseProm(await res.text());
    },
    cpuSeconds() {
      try {
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        const stat = readFileSync(`/proc/${proc.pid}/stat`, "utf8");
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return (Number(f[11]) + Number(f[12])) / CLK_TCK;
      } catch {
        return undefined;
      }
    },
    tail,
    kill() {
      proc.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
    },
    async stop() {
      if (handleSignals) {
        process.off("SIGINT", abandon);
        process.off("SIGTERM", abandon);
      }
      proc.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 10_000)))]);
      clearTimeout(timer);
      if (!done) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function pump(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) onLine(buf);
}
