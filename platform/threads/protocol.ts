// What the main thread and a module thread (threads.workers) say to each other over the control
// port. The bus has a port of its own (platform/bus/port.ts). Both ends are this codebase.
import type { WireError } from "../bus/port.ts";
import type { PlatformConfig } from "../config/schema.ts";

/** What a module thread starts from (its `workerData`; the ports travel in the transfer list). */
export interface ThreadData {
  /** The process's configuration, with `threads.workers` emptied (a thread starts no threads). */
  readonly config: PlatformConfig;
  /** The modules this thread hosts, by name. */
  readonly modules: readonly string[];
  /** Requests, replies and HTTP forwarding. */
  readonly control: MessagePort;
  /** The main thread's bus, when it is the embedded one (one writer for the log); otherwise the thread opens the bus itself. */
  readonly bus: MessagePort | undefined;
}

/** A route the thread's modules serve, which the main thread forwards. */
export interface ThreadRoute {
  readonly method: string;
  readonly path: string;
}

/** Operations the main thread asks of a thread's platform. */
export type ThreadOp = "metrics" | "ready" | "settle" | "stop";

/** main → thread. */
export type ToThread =
  | { readonly t: "fetch"; readonly id: number; readonly method: string; readonly url: string; readonly headers: [string, string][]; readonly body: ArrayBuffer | undefined }
  | { readonly t: "abort"; readonly id: number }
  | { readonly t: "call"; readonly id: number; readonly op: ThreadOp; readonly arg?: number };

/** thread → main. */
export type FromThread =
  | { readonly t: "started"; readonly routes: readonly ThreadRoute[]; readonly readModels: readonly string[] }
  | { readonly t: "failed"; readonly error: WireError }
  | { readonly t: "head"; readonly id: number; readonly status: number; readonly headers: [string, string][] }
  | { readonly t: "chunk"; readonly id: number; readonly data: Uint8Array }
  | { readonly t: "end"; readonly id: number; readonly error?: WireError }
  | { readonly t: "result"; readonly id: number; readonly value?: unknown; readonly error?: WireError };

export { fromWire, toWire, type WireError } from "../bus/port.ts";
