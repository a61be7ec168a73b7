import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { tempDataDir, waitFor } from "./platform.ts";
import { timedPrefix } from "./stale.ts";

/** The shared NATS server of this machine (JetStream on). Tests never touch streams they did not create. */
export const SHARED_NATS = process.env.SELARAS_TEST_NATS ?? "nats://127.0.0.1:4222";

/**
 * A bus and storage prefix no other test run uses, e.g. `t_tp3u61_3fa9c2`: every stream a test
 * creates starts with it (upper-cased), every schema, role and slot with `<prefix>_`.
 */
export function randomPrefix(): string {
  return timedPrefix("t_", randomUUID().slice(0, 6));
}

/** Names of the streams whose name starts with `<PREFIX>_` — the ones a test with that prefix created. */
export async function listStreams(servers: string, prefix: string): Promise<string[]> {
  const nc = await connect({ servers, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    const mine: string[] = [];
    // The partition lease bucket's stream is KV_<PREFIX>_LEASES.
    for await (const name of jsm.streams.names()) if (name.startsWith(`${prefix.toUpperCase()}_`) || name === `KV_${prefix.toUpperCase()}_LEASES`) mine.push(name);
    return mine.sort();
  } finally {
    await nc.close();
  }
}

/** Message count of every stream of `prefix`, by stream name: a fingerprint of "was anything published". */
export async function streamMessageCounts(servers: string, prefix: string): Promise<Record<string, number>> {
  const nc = await connect({ servers, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    const out: Record<string, number> = {};
    for await (const info of jsm.streams.list()) if (info.config.name.startsWith(`${prefix.toUpperCase()}_`)) out[info.config.name] = info.state.messages;
    return out;
  } finally {
    await nc.close();
  }
}

/** Deletes every stream whose name starts with `<PREFIX>_` — the ones a test with that prefix created. */
export async function deleteStreams(servers: string, prefix: string): Promise<string[]> {
  const mine = await listStreams(servers, prefix);
  if (mine.length === 0) return mine;
  const nc = await connect({ servers, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    for (const name of mine) await jsm.streams.delete(name);
    return mine;
  } finally {
    await nc.close();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * A private nats-server with JetStream, on a free port and its own store directory — for fault
 * tests that stop, kill and restart the server without disturbing the shared one.
 *
 * @example const server = await NatsServer.start(); await server.kill(); await server.restart(); await server.dispose();
 */
export class NatsServer {
  #proc: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  readonly log: string[] = [];

  private constructor(
    readonly binary: string,
    readonly port: number,
    readonly storeDir: string,
  ) {}

  static async start(binary = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server"): Promise<NatsServer> {
    const server = new NatsServer(binary, await freePort(), tempDataDir("selaras-nats-"));
    await server.restart();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#proc !== undefined;
  }

  /** Starts the server (again) on the same port and store directory; resolves once it serves. */
  async restart(): Promise<void> {
    if (this.#proc) throw new Error("nats-server is already running");
    const proc = spawn(this.binary, ["-js", "-sd", this.storeDir, "-a", "127.0.0.1", "-p", String(this.port)], { stdio: ["ignore", "pipe", "pipe"] });
    this.#proc = proc;
    let ready = false;
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        this.log.push(line);
        if (line.includes("Server is ready")) ready = true;
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    this.#exited = new Promise((resolve) => {
      const gone = (why: string) => {
        this.log.push(why);
        if (this.#proc === proc) this.#proc = undefined;
        resolve();
      };
      proc.once("exit", (code, signal) => gone(`exited (${signal ?? code})`));
      proc.once("error", (err) => gone(`failed to start: ${err.message}`));
    });
    await waitFor(() => ready || !this.#proc, { timeoutMs: 20_000, what: "nats-server to be ready" });
    if (!ready) throw new Error(`nats-server exited at start:\n${this.log.slice(-20).join("\n")}`);
  }

  /** Graceful stop (SIGTERM); resolves once the process exited. */
  stop(): Promise<void> {
    return this.#signal("SIGTERM");
  }

  /** `kill -9`; resolves once the process is gone. */
  kill(): Promise<void> {
    return this.#signal("SIGKILL");
  }

  /** Kills the server and deletes its store. */
  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.storeDir, { recursive: true, force: true });
  }

  async #signal(signal: NodeJS.Signals): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    proc.kill(signal);
    await this.#exited;
  }
}
