import { timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Hono, MiddlewareHandler } from "hono";
import type { Logger } from "../observability/logger.ts";
import { invalidArgument, toPublicError } from "../rpc/errors.ts";
import { codeName } from "../http/errors.ts";
import type { ReadModels } from "./read-models.ts";
import type { ReplayProgress } from "./rebuild.ts";

/** What the HTTP server tells the app about a request (see `Platform.listen`): the client's address. */
export interface ConnectionInfo {
  readonly ip?: string;
}

const HEARTBEAT_MS = 5000;

function isLoopback(ip: string): boolean {
  return ip === "::1" || ip.startsWith("127.") || ip.startsWith("::ffff:127.");
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Operator endpoints under `/admin/v1/`: with `admin.token` set they require
 * `Authorization: Bearer <token>`; without one they answer only clients on the loopback
 * interface (and in-process calls through `platform.fetch`).
 */
export function adminGuard(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (token !== undefined) {
      const given = c.req.header("authorization")?.replace(/^Bearer\s+/i, "");
      if (given === undefined || !sameSecret(given, token)) throw new ConnectError("admin endpoints need Authorization: Bearer <admin.token>", Code.Unauthenticated);
    } else {
      const ip = (c.env as ConnectionInfo | undefined)?.ip;
      if (ip !== undefined && !isLoopback(ip)) throw new ConnectError("admin endpoints answer loopback clients only; set admin.token to reach them from elsewhere", Code.PermissionDenied);
    }
    await next();
  };
}

/**
 * `GET /admin/v1/read-models` — each read model with its checkpoint and last rebuild.
 * `POST /admin/v1/read-models/{consumer}/replay[?until=<ISO time>]` — rebuilds it, answering one
 * JSON object per line (NDJSON) as it goes: `started`, `progress` (phase, passed/total,
 * applied, skipped), then `done` with the result or `error`. Closing the connection before the
 * swap aborts the rebuild, leaving the live read model as it was.
 */
export function mountReadModelAdmin(app: Hono, readModels: ReadModels, opts: { token?: string; logger: Logger }): void {
  const guard = adminGuard(opts.token);
  app.get("/admin/v1/read-models", guard, async (c) => c.json({ readModels: await readModels.list() }));
  app.post("/admin/v1/read-models/:consumer/replay", guard, (c) => {
    const consumer = c.req.param("consumer");
    const untilText = c.req.query("until");
    let until: number | undefined;
    if (untilText !== undefined) {
      until = Date.parse(untilText);
      if (!/^\d{4}-\d\d-\d\d/.test(untilText) || Number.isNaN(until)) throw invalidArgument([{ field: "until", description: `expected an ISO 8601 time such as 2025-01-31T12:00:00Z, got "${untilText}"` }]);
    }
    readModels.check(consumer);
    const abort = new AbortController();
    c.req.raw.signal?.addEventListener("abort", () => abort.abort(new Error("the client went away")), { once: true });
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let open = true;
        const send = (o: Record<string, unknown>) => {
          if (!open) return;
          try {
            controller.enqueue(encoder.encode(JSON.stringify(o) + "\n"));
          } catch {
            open = false; // cancelled: the client went away
          }
        };
        let last: ReplayProgress | undefined;
        // Keeps the connection busy (proxies, Bun's idle timeout) while a phase has nothing new to say.
        const heartbeat = setInterval(() => last && send({ event: "progress", ...last }), HEARTBEAT_MS);
        send({ event: "started", consumer, mode: until === undefined ? "swap" : "point-in-time", ...(until !== undefined && { until: new Date(until).toISOString() }) });
        readModels
          .replay(consumer, { until, signal: abort.signal, onProgress: (p) => send({ event: "progress", ...(last = p) }) })
          .then(
            (result) => send({ event: "done", ...result }),
            (err: unknown) => {
              const pub = toPublicError(err);
              if (pub.code === Code.Internal) opts.logger.error("read model rebuild failed", { consumer, err });
              // The client is the operator (the endpoint is guarded): it gets the cause's message, the log its stack.
              send({ event: "error", code: codeName(pub.code), message: pub.code === Code.Internal ? `${pub.rawMessage}: ${(err as Error).message}` : pub.rawMessage });
            },
          )
          .finally(() => {
            clearInterval(heartbeat);
            if (open) controller.close();
            open = false;
          });
      },
      cancel() {
        abort.abort(new Error("the client went away"));
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" } });
  });
}
