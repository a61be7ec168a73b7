import { clone, create, isMessage, type DescMessage, type DescMethod, type DescMethodUnary, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext, type Interceptor, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { runUnaryCall } from "@connectrpc/connect/protocol";
import { toPublicError } from "./errors.ts";

type UnaryHandler = (req: unknown, ctx: HandlerContext) => unknown;

/** Services served in this process, by method, for the in-process fast path. */
export class LocalServiceRegistry {
  readonly #methods = new Map<DescMethod, UnaryHandler>();
  readonly #services = new Set<DescService>();

  /** Registers a service implementation. Unimplemented methods answer `Unimplemented`, as over the network. */
  register(service: DescService, impl: Record<string, unknown>): void {
    if (this.#services.has(service)) throw new Error(`service ${service.typeName} is registered twice`);
    this.#services.add(service);
    for (const method of service.methods) {
      const fn = impl[method.localName];
      if (method.methodKind !== "unary") continue;
      this.#methods.set(
        method,
        typeof fn === "function"
          ? (fn.bind(impl) as UnaryHandler)
          : () => {
              throw new ConnectError(`${service.typeName}.${method.name} is not implemented`, Code.Unimplemented);
            },
      );
    }
  }

  has(service: DescService): boolean {
    return this.#services.has(service);
  }

  handler(method: DescMethod): UnaryHandler | undefined {
    return this.#methods.get(method);
  }
}

/**
 * A Connect `Transport` that calls a co-located service implementation directly: no
 * serialisation, no HTTP, no protocol pipeline — yet the same contract as a remote call:
 * - the callee gets a deep copy of the request and the caller a deep copy of the response, so
 *   neither can mutate the other's message;
 * - errors arrive as ConnectErrors with their code (unknown errors become `Internal`);
 * - deadlines (`timeoutMs`) abort the handler's `signal` and fail the call with `DeadlineExceeded`;
 * - client interceptors run as for any other transport.
 *
 * @example
 * const client = createClient(CatalogService, createLocalTransport({ registry, interceptors }));
 */
export function createLocalTransport(opts: {
  registry: LocalServiceRegistry;
  interceptors?: Interceptor[];
  defaultTimeoutMs?: number;
  onError?: (err: unknown, method: DescMethod) => void;
}): Transport {
  const { registry, interceptors = [], defaultTimeoutMs, onError } = opts;
  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      input: unknown,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const handler = registry.handler(method);
      if (!handler) return Promise.reject(new ConnectError(`${method.parent.typeName} is not served in this process`, Code.Unimplemented));
      const effectiveTimeout = timeoutMs ?? defaultTimeoutMs;
      return runUnaryCall<I, O>({
        interceptors,
        signal,
        timeoutMs: effectiveTimeout,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: `local:///${method.parent.typeName}/${method.name}`,
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message: input as never,
        },
        next: async (req) => {
          const deadlineAt = effectiveTimeout === undefined ? undefined : Date.now() + effectiveTimeout;
          const ctx: HandlerContext = {
            method,
            service: method.parent,
            signal: req.signal,
            timeoutMs: () => (deadlineAt === undefined ? undefined : deadlineAt - Date.now()),
            requestMethod: "POST",
            requestHeader: req.header,
            responseHeader: new Headers(),
            responseTrailer: new Headers(),
            protocolName: "local",
            url: req.url,
            values: req.contextValues,
          } as HandlerContext;
          let out: unknown;
          try {
            out = await raceAbort(handler(clone(method.input, req.message), ctx), req.signal);
          } catch (err) {
            if (!(err instanceof ConnectError)) onError?.(err, method);
            throw toPublicError(err);
          }
          const message = clone(method.output, isMessage(out, method.output) ? out : create(method.output, out as never));
          return {
            stream: false,
            service: method.parent,
            method,
            header: ctx.responseHeader,
            trailer: ctx.responseTrailer,
            message: message as MessageShape<O>,
          };
        },
      });
    },
    stream() {
      return Promise.reject(new ConnectError("streaming RPCs are not supported in-process yet", Code.Unimplemented));
    },
  };
}

/** Resolves with `value`, unless `signal` aborts first (deadline or caller cancel). */
function raceAbort<T>(value: T | Promise<T>, signal: AbortSignal): Promise<T> {
  if (!(value instanceof Promise)) return Promise.resolve(value);
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    value.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

function abortError(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError ? signal.reason : ConnectError.from(signal.reason, Code.Canceled);
}
