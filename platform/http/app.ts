import { Code, ConnectError, createConnectRouter } from "@connectrpc/connect";
import { createFetchHandler } from "@connectrpc/connect/protocol";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ServiceBinding } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import { childSpan, formatTraceparent, parseTraceparent, type Tracer } from "../observability/trace.ts";
import { publicErrors, toPublicError } from "../rpc/errors.ts";
import { errorBody, errorResponse } from "./errors.ts";

export interface HttpAppOptions {
  logger: Logger;
  metrics: Metrics;
  tracer: Tracer;
  maxBodyBytes: number;
  /** Readiness checks by name; each throws when not ready. */
  readiness: () => Promise<Record<string, string>>;
}

/**
 * The one HTTP app of a process: REST routes, Connect handlers (Connect protocol in JSON and
 * binary, and gRPC-Web) at `/<package>.<Service>/<Method>`, health, readiness and metrics.
 * Every request runs in a trace (the caller's `traceparent` or a new one) and answers errors in
 * one shape.
 */
export function createHttpApp(opts: HttpAppOptions): { app: Hono; mountServices(bindings: readonly ServiceBinding[]): void } {
  const { logger, metrics, tracer } = opts;
  const app = new Hono();
  // One histogram child per (method, route, status), resolved once: no label hashing per request.
  const durations = new Map<string, { observe(v: number): void }>();
  const observe = (method: string, route: string, status: number, seconds: number) => {
    const key = `${method} ${status} ${route}`;
    let child = durations.get(key);
    if (!child) durations.set(key, (child = metrics.httpDuration.labels({ method, route, status: String(status) })));
    child.observe(seconds);
  };

  // Requests being handled, read at scrape time (the scrape counts itself): what a graceful stop waits for.
  let inFlight = 0;
  metrics.gaugeFn("selaras_http_requests_in_flight", "HTTP requests being handled now, the scrape asking included (a graceful stop waits for them)", [], (set) => set({}, inFlight));

  app.use("*", async (c, next) => {
    const span = childSpan(parseTraceparent(c.req.header("traceparent")));
    const started = performance.now();
    inFlight++;
    try {
      await tracer.run(span, async () => {
        await next();
        c.header("traceparent", formatTraceparent(span));
        const route = c.req.routePath ?? "unmatched";
        const seconds = (performance.now() - started) / 1000;
        observe(c.req.method, route, c.res.status, seconds);
        logger.debug("request", { method: c.req.method, route, status: c.res.status, ms: Math.round(seconds * 1e5) / 100 });
      });
    } finally {
      inFlight--;
    }
  });

  app.use(
    "*",
    bodyLimit({
      maxSize: opts.maxBodyBytes,
      // 413 is what HTTP clients and proxies understand for this; the body keeps the one error shape.
      onError: (c) => c.json(errorBody(new ConnectError(`request body exceeds ${opts.maxBodyBytes} bytes (http.maxBodyBytes)`, Code.ResourceExhausted)), 413),
    }),
  );

  app.onError((err, c) => {
    const pub = toPublicError(err);
    if (pub.code === Code.Internal || pub.code === Code.Unknown) {
      logger.error("request failed", { method: c.req.method, path: c.req.path, err: pub.cause ?? err });
    }
    return errorResponse(c, pub);
  });

  app.notFound((c) => errorResponse(c, new ConnectError(`no route for ${c.req.method} ${c.req.path}`, Code.NotFound)));

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    try {
      return c.json({ status: "ready", checks: await opts.readiness() });
    } catch (err) {
      return c.json({ status: "not-ready", error: (err as Error).message }, 503);
    }
  });
  app.get("/metrics", async (c) => c.text(await metrics.text(), 200, { "content-type": metrics.contentType }));

  function mountServices(bindings: readonly ServiceBinding[]): void {
    const router = createConnectRouter({ interceptors: [publicErrors(logger, "connect")], readMaxBytes: opts.maxBodyBytes });
    for (const b of bindings) router.service(b.service, b.impl as never);
    for (const h of router.handlers) {
      const fetchHandler = createFetchHandler(h);
      app.on(["POST", "GET"], h.requestPath, (c) => fetchHandler(c.req.raw));
    }
  }

  return { app, mountServices };
}
