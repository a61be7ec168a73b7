import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { ServiceBinding } from "../module.ts";
import type { Logger } from "../observability/logger.ts";
import { childSpan, formatTraceparent, parseTraceparent, type Tracer } from "../observability/trace.ts";
import { publicErrors } from "./errors.ts";

// Native gRPC needs HTTP/2, which Bun.serve does not speak: this is a second server on
// node:http2 (cleartext, "h2c", which is what gRPC clients use without TLS) that serves the same
// service implementations as the Connect handlers of the HTTP app, with the same error model.

export interface GrpcServerOptions {
  readonly port: number;
  readonly host: string;
  readonly bindings: readonly ServiceBinding[];
  readonly logger: Logger;
  readonly tracer: Tracer;
  /** Largest request message accepted, in bytes (the HTTP app's body limit). */
  readonly readMaxBytes: number;
  /** How long `stop()` lets in-flight calls finish before it cuts the connections, in ms. */
  readonly drainTimeoutMs?: number;
}

export interface GrpcServer {
  /** The bound port (the free one picked when `port` was 0). */
  readonly port: number;
  /** Graceful stop: no new connections or calls; calls in flight finish (up to the drain timeout). */
  stop(): Promise<void>;
}

/**
 * The server interceptors of a gRPC call, outermost first: the call runs in a span of the
 * caller's trace (`traceparent` metadata) or of a new one, which it answers in the response
 * headers (or the trailers of an error); anything but a ConnectError becomes Internal with a
 * generic message, its cause logged with the trace id — as in the HTTP app.
 */
export function grpcServerInterceptors(logger: Logger, tracer: Tracer): Interceptor[] {
  const trace: Interceptor = (next) => (req) => {
    const span = childSpan(parseTraceparent(req.header.get("traceparent")));
    const started = performance.now();
    const procedure = `${req.service.typeName}/${req.method.name}`;
    return tracer.run(span, async () => {
      try {
        const res = await next(req);
        res.header.set("traceparent", formatTraceparent(span));
        logger.debug("rpc", { protocol: "grpc", procedure, code: "ok", ms: Math.round((performance.now() - started) * 100) / 100 });
        return res;
      } catch (err) {
        if (err instanceof ConnectError) err.metadata.set("traceparent", formatTraceparent(span));
        logger.debug("rpc", { protocol: "grpc", procedure, code: ConnectError.from(err).code, ms: Math.round((performance.now() - started) * 100) / 100 });
        throw err;
      }
    });
  };
  return [trace, publicErrors(logger, "grpc")];
}

/**
 * Starts a native gRPC server for `bindings` on `host:port` and resolves once it listens.
 * Works under Bun (its node:http2) and Node.
 * @example const grpc = await startGrpcServer({ port: 0, host: "127.0.0.1", bindings, logger, tracer, readMaxBytes: 1 << 20 });
 */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServer> {
  const handler = connectNodeAdapter({
    routes: (router) => {
      for (const b of opts.bindings) router.service(b.service, b.impl as never);
    },
    grpc: true,
    grpcWeb: false, // gRPC-Web and Connect are served on the HTTP port
    connect: false,
    interceptors: grpcServerInterceptors(opts.logger, opts.tracer),
    readMaxBytes: opts.readMaxBytes,
  });
  const server: Http2Server = createServer({}, handler);
  // Tracked so stop() can send GOAWAY: server.close() alone waits for clients that keep their
  // connection open (gRPC clients always do).
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (s: ServerHttp2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    s.on("error", (err) => opts.logger.debug("grpc session error", { err }));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`gRPC server could not listen on ${opts.host}:${opts.port}: ${err.message}`, { cause: err }));
    server.once("error", onError);
    server.listen(opts.port, opts.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => opts.logger.error("grpc server error", { err }));
  const port = (server.address() as AddressInfo).port;

  let stopping: Promise<void> | undefined;
  return {
    port,
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, opts.drainTimeoutMs ?? 5_000);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        for (const s of sessions) s.close();
      });
      return stopping;
    },
  };
}
