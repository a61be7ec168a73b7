import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import type { Hono } from "hono";
import { busFile } from "./bus/embedded.ts";
import { openBus } from "./bus/open.ts";
import { collectCaptures, startCaptures, type Captures } from "./cdc/capture.ts";
import { createConsumer, KeyedLocks } from "./bus/consumer.ts";
import type { Bus, BusSubscription } from "./bus/types.ts";
import { crossKeyProblems } from "./config/cross-checks.ts";
import type { PlatformConfig } from "./config/schema.ts";
import { createHttpApp } from "./http/app.ts";
import type { CaptureSpec, ModuleContext, ModuleInstance, ModuleManifest, ModuleStorage, ServiceBinding, SubscriptionSpec } from "./module.ts";
import { createLogger, type Logger, type LogSink } from "./observability/logger.ts";
import { Metrics } from "./observability/metrics.ts";
import { childSpan, formatTraceparent, Tracer } from "./observability/trace.ts";
import { OutboxRelay, type Relay } from "./outbox/relay.ts";
import { setUpWalRelays, walRelayedModules } from "./outbox/wal-relays.ts";
import { adminGuard, mountReadModelAdmin, ReadModels, type ConnectionInfo } from "./read-models/index.ts";
import { startGrpcServer, type GrpcServer } from "./rpc/grpc-server.ts";
import { createLocalTransport, LocalServiceRegistry } from "./rpc/local-transport.ts";
import { createRemoteTransport, type RemoteTransport } from "./rpc/remote-transport.ts";
import { ModuleThread, planThreads, threadMetrics } from "./threads/host.ts";
import type { PlatformStorage } from "./storage/module-storage.ts";
import { moduleFile, openModuleStorage } from "./storage/open.ts";
import { ownFiles } from "./storage/sqlite.ts";
import { validateModuleConfig, validateTopology } from "./topology.ts";
import type { RemoteProcess } from "./topology/plan.ts";

/** What `createPlatform` needs: the validated config and the modules this process hosts. */
export interface PlatformOptions {
  readonly config: PlatformConfig;
  readonly modules: readonly ModuleManifest<any>[];
  /**
   * Other processes of a split topology whose services this one calls (see `planProcess`):
   * clients of their services speak Connect over HTTP. Default: none, every callee is local.
   */
  readonly remotes?: readonly RemoteProcess[];
  /** Where JSON log lines go (default stdout/stderr). */
  readonly logSink?: LogSink;
  /**
   * Tables to capture (change data capture), declared by any module of the binary: this process
   * captures those of the modules it hosts (`capturesOf(allModules)`). Default: the captures
   * the hosted modules declare.
   */
  readonly captures?: readonly CaptureSpec[];
  /** The bus to use instead of opening the configured one (a module thread's port to the main thread's bus); closed with the platform. */
  readonly bus?: Bus;
  /** The entry module of module threads (`threads.workers`): the binary's module-thread.ts. Needed when `threads.workers` is set. */
  readonly threadEntry?: string | URL;
  /** Told when a module thread ends unexpectedly: its modules no longer run (the binary exits so a supervisor restarts it). Default: logged, and /readyz fails. */
  readonly onThreadLost?: (err: Error) => void;
}

/** A running platform. No globals: several can run side by side in one process. */
export interface Platform {
  readonly config: PlatformConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The HTTP app (REST, Connect, health); usable without a listening socket. */
  readonly app: Hono;
  /** Serves one request through the app, e.g. from a test. */
  fetch(req: Request): Promise<Response>;
  /** A typed client for a service: in-process when hosted here, Connect over HTTP when a remote process hosts it. */
  client<S extends DescService>(service: S): Client<S>;
  /** The event bus (embedded or NATS), for tests and operator tools (dead letters, re-drive). */
  readonly bus: Bus;
  /** A module's storage, for tests and operator tools. */
  storage(module: string): PlatformStorage;
  /** What /readyz checks: resolves with each check's state, throws when not ready. */
  ready(): Promise<Record<string, string>>;
  /** The routes the modules of this platform serve (not health, metrics or admin): what a main thread forwards to a module thread. */
  readonly moduleRoutes: ReadonlyArray<{ method: string; path: string }>;
  /** The read models this process hosts, with their checkpoints and rebuilds (replay). */
  readonly readModels: ReadModels;
  /** Starts listening (Bun only), and the gRPC server when `grpc.port` is set. Resolves with the bound ports. */
  listen(): Promise<{ port: number; url: string; grpcPort?: number }>;
  /** Resolves once every outbox is published and every consumer has caught up. */
  settle(timeoutMs?: number): Promise<void>;
  /** Graceful shutdown: stop taking requests, flush the relays, stop consumers, close storage. */
  stop(): Promise<void>;
}

/**
 * Boots the platform with the given modules: opens each module's private storage and migrates
 * it, starts the modules, wires their services, routes and subscriptions, and starts the outbox
 * relays. Listening on a port is a separate step (`listen`).
 *
 * @example
 * const platform = await createPlatform({ config, modules: [catalog, orders] });
 * await platform.listen();
 */
export async function createPlatform(opts: PlatformOptions): Promise<Platform> {
  const { config } = opts;
  const contradictions = crossKeyProblems(config);
  if (contradictions.length > 0) throw new Error(contradictions.map((p) => `${p.key}: ${p.message}`).join("\n"));
  const tracer = new Tracer();
  // Every log line written while serving a request or handling an event carries its trace id.
  const logger = createLogger({
    level: config.logLevel,
    base: config.process === undefined ? { service: config.serviceName } : { service: config.serviceName, process: config.process },
    sink: opts.logSink,
    context: () => {
      const t = tracer.current();
      return t && { traceId: t.traceId, spanId: t.spanId };
    },
  });
  const remotes = opts.remotes ?? [];
  validateTopology(opts.modules, remotes.flatMap((r) => r.services.map((s) => s.typeName)));
  const moduleConfigs = validateModuleConfig(opts.modules, config.modules);
  // threads.workers: some modules run on threads of their own (platform/threads, ADR 0017); the rest here.
  const workers = config.threads.workers ?? [];
  const threadPlan = workers.length > 0 ? planThreads(workers, opts.modules) : undefined;
  if (threadPlan && !(globalThis as { Bun?: unknown }).Bun) throw new Error("threads.workers needs the Bun runtime: module threads run the binary's TypeScript entry");
  if (threadPlan && opts.threadEntry === undefined) throw new Error("threads.workers is set, but this binary names no module-thread entry (createPlatform's threadEntry)");
  const hosted = threadPlan ? opts.modules.filter((m) => threadPlan.main.has(m.name)) : opts.modules;
  const metrics = new Metrics();
  const registry = new LocalServiceRegistry();
  mkdirSync(config.dataDir, { recursive: true });

  const localTransport: Transport = createLocalTransport({
    registry,
    defaultTimeoutMs: config.rpc.timeoutMs,
    onError: (err, method) => logger.error("rpc failed", { procedure: `${method.parent.typeName}/${method.name}`, err }),
    onCall: metrics.rpcObserver("local"),
  });
  // One transport, hence one circuit breaker, per remote process.
  const remoteTransports = new Map<string, RemoteTransport>();
  const routes = new Map<string, RemoteTransport>();
  const rpcLogger = logger.child({ component: "rpc" });
  const remoteObserver = metrics.rpcObserver("http");
  for (const r of remotes) {
    const transport = createRemoteTransport({
      baseUrl: r.url,
      process: r.name,
      defaultTimeoutMs: config.rpc.timeoutMs,
      retry: config.rpc.retry,
      breaker: config.rpc.breaker,
      traceparent: () => {
        const t = tracer.current();
        return t && formatTraceparent(childSpan(t));
      },
      onCall: remoteObserver,
      onRetry: (method, err, attempt, delayMs) => rpcLogger.debug("rpc retry", { process: r.name, procedure: `${method.parent.typeName}/${method.name}`, attempt, delayMs, code: err.code, err: err.message }),
      onCircuit: (state, err) => (state === "closed" ? rpcLogger.info : rpcLogger.warn)("rpc circuit " + state, { process: r.name, url: r.url, err }),
    });
    remoteTransports.set(r.name, transport);
    for (const s of r.services) routes.set(s.typeName, transport);
  }
  const clients = new Map<DescService, Client<DescService>>();
  const client = <S extends DescService>(service: S): Client<S> => {
    let c = clients.get(service);
    if (!c) clients.set(service, (c = createClient(service, routes.get(service.typeName) ?? localTransport)));
    return c as Client<S>;
  };

  // The SQLite files this process keeps — its modules' (a module thread owns its own) and the
  // embedded bus's log — are its alone: a second process on them fails here, naming them.
  const releaseFiles = await ownFiles([
    ...(config.storage.kind === "postgres" ? [] : hosted.map((m) => moduleFile(config, m.name))),
    ...(opts.bus || config.bus.kind === "nats" ? [] : [busFile(config.dataDir)]),
  ]);
  const bus: Bus & { prune?(before: number): Promise<unknown> } =
    opts.bus ??
    (await openBus(config, logger.child({ component: "bus" })).catch((err: unknown) => {
      releaseFiles();
      throw err;
    }));
  const readModels = new ReadModels({ bus, config, tracer, logger });

  let storages = new Map<string, PlatformStorage>();
  const instances: Array<{ manifest: ModuleManifest<any>; instance: ModuleInstance }> = [];
  const relays: Relay[] = [];
  const subscriptions: BusSubscription[] = [];
  const threads: ModuleThread[] = [];
  let lostThread: Error | undefined;
  let captures: Captures | undefined;
  // Ready = able to serve: every module's storage answers (migrations ran before start), on every
  // module thread too. The bus is reported but does not fail readiness: while it is away, writes
  // still commit and their events wait in the outbox, so a load balancer must keep sending requests.
  const ready = async (): Promise<Record<string, string>> => {
    if (stopped) throw new Error("shutting down");
    if (lostThread) throw new Error(`a module thread was lost: ${lostThread.message}`);
    await Promise.all([...storages.values()].map((s) => s.ping()));
    await Promise.all(threads.map((t) => t.call("ready")));
    const busCheck = await bus.ping().then(
      () => bus.kind,
      (err: Error) => `${bus.kind} unreachable, events wait in the outbox: ${err.message}`,
    );
    return { storage: "ok", migrations: "ok", bus: busCheck, ...(threads.length > 0 && { threads: `${threads.length} ok` }) };
  };
  const http = createHttpApp({ logger, metrics, tracer, maxBodyBytes: config.http.maxBodyBytes, readiness: ready });

  let stopped = false;
  let server: { stop(closeActive?: boolean): void | Promise<void>; port?: number } | undefined;
  let grpcServer: GrpcServer | undefined;
  let servedBindings: readonly ServiceBinding[] = [];
  let moduleRoutes: ReadonlyArray<{ method: string; path: string }> = [];
  const cleanup = async () => {
    try {
      await readModels.stop();
      // The module threads' consumers and relays use the main thread's bus: they stop first.
      for (const t of threads) await t.stop().catch((err: unknown) => logger.error("module thread did not stop cleanly", { modules: t.modules, err }));
      for (const s of subscriptions) await s.stop();
      for (const r of relays) await r.stop();
      await captures?.stop();
      for (const { instance } of instances) await instance.stop?.();
      await bus.close();
      for (const s of storages.values()) await s.close();
    } finally {
      releaseFiles();
    }
  };

  try {
    storages = await openModuleStorage(config, hosted, {
      tracer,
      logger,
      onCommit: (module) => {
        const commits = metrics.commitBatch.labels({ module });
        return (n) => commits.observe(n);
      },
      walRelayed: walRelayedModules(config, hosted),
      owned: true, // ownFiles above
    });
    // Before any module writes: a change committed from here on is captured.
    captures = await startCaptures({ config, specs: opts.captures ?? collectCaptures(opts.modules), storages, bus, logger, metrics });
    // outbox.relay = cdc: fails here, before any module starts, when the server or role cannot stream the WAL.
    const walRelays = await setUpWalRelays({ config, manifests: hosted, storages, bus, logger, metrics });
    const bindings: ServiceBinding[] = [];
    const routesBefore = http.app.routes.length;
    for (const manifest of hosted) {
      const storage = storages.get(manifest.name)!;
      const ctx: ModuleContext<unknown> = {
        name: manifest.name,
        config: moduleConfigs.get(manifest.name),
        storage,
        logger: logger.child({ module: manifest.name }),
        metrics: { gauge: (name, help, labels, collect) => metrics.gaugeFn(name, help, labels, collect), counter: (name, help, labels) => metrics.counter(name, help, labels) },
        client,
      };
      const instance = await manifest.start(ctx);
      instances.push({ manifest, instance });
      for (const b of instance.services ?? []) {
        registry.register(b.service, b.impl as Record<string, unknown>);
        bindings.push(b);
      }
      instance.routes?.(http.app);
      const locks = new KeyedLocks(); // the module's serializeBy keys, across its subscriptions
      const lingers = lingersOf(config, manifest.name, instance.subscriptions ?? []);
      for (const spec of instance.subscriptions ?? []) {
        const consumer = createConsumer({ module: manifest.name, spec, storage, tracer, metrics, logger: ctx.logger, locks });
        const subscription = bus.subscribe({ ...consumer, retain: spec.readModel !== undefined, lingerMs: lingers.get(spec.name) });
        subscriptions.push(subscription);
        if (spec.readModel) readModels.add({ consumer: `${manifest.name}.${spec.name}`, manifest, spec, subscription, storage, context: ctx });
      }
      const relay = walRelays.get(manifest.name) ?? new OutboxRelay(storage, bus, { batchSize: config.outbox.batchSize, logger: ctx.logger, metrics });
      relay.start();
      relays.push(relay);
    }
    http.mountServices(bindings);
    moduleRoutes = uniqueRoutes(http.app.routes.slice(routesBefore));
    for (const group of threadPlan?.groups ?? []) {
      const onLost = (err: Error) => {
        lostThread = err;
        opts.onThreadLost?.(err);
      };
      threads.push(await ModuleThread.start({ entry: opts.threadEntry!, modules: group, config, bus, logger, onLost }));
    }
    mountThreadRoutes(threads, { app: http.app, tracer, readModels, token: config.admin.token });
    readModels.hostedOnThreads(threads.flatMap((t) => t.readModels));
    mountReadModelAdmin(http.app, readModels, { token: config.admin.token, logger });
    for (const t of threads) metrics.include(() => threadMetrics(t, bus.kind === "embedded"));
    servedBindings = bindings;
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }

  metrics.gaugeFn("selaras_outbox_backlog", "Outbox rows committed but not yet published", ["module"], async (set) => {
    for (const [m, s] of storages) set({ module: m }, (await s.outboxStats()).backlog);
  });
  metrics.gaugeFn("selaras_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row (0 when none)", ["module"], async (set) => {
    const now = Date.now();
    for (const [m, s] of storages) {
      const oldest = (await s.outboxStats()).oldestCreatedAt;
      set({ module: m }, oldest === undefined ? 0 : (now - oldest) / 1000);
    }
  });
  metrics.gaugeFn("selaras_consumer_lag_events", "Events on the bus a consumer has not processed yet", ["consumer"], async (set) => {
    for (const [c, n] of await bus.consumerLag()) set({ consumer: c }, n);
  });
  if (bus.heldPartitions) {
    const held = bus.heldPartitions.bind(bus);
    metrics.gaugeFn("selaras_bus_partitions_held", "Partitions of a consumer this instance reads now (NATS: the holder of each partition's lease; 0 while standing by)", ["consumer"], async (set) => {
      for (const [c, n] of held()) set({ consumer: c }, n);
    });
  }
  metrics.gaugeFn("selaras_dead_letters", "Events in the dead-letter queue, per consumer", ["consumer"], async (set) => {
    const counts = new Map<string, number>();
    for (const d of await bus.deadLetters()) counts.set(d.consumer, (counts.get(d.consumer) ?? 0) + 1);
    for (const [c, n] of counts) set({ consumer: c }, n);
  });

  if (remoteTransports.size > 0) {
    metrics.gaugeFn("selaras_rpc_circuit_state", "Circuit breaker towards each remote process: 0 closed, 1 open, 2 half-open, 3 isolated", ["process"], (set) => {
      for (const [p, t] of remoteTransports) set({ process: p }, t.circuitState());
    });
  }

  const pruneTimer = setInterval(() => {
    const outboxBefore = Date.now() - config.outbox.retentionHours * 3_600_000;
    const busBefore = Date.now() - config.bus.retentionHours * 3_600_000;
    for (const s of storages.values()) s.prune(outboxBefore, busBefore).catch((err) => logger.warn("outbox prune failed", { module: s.module, err }));
    bus.prune?.(busBefore).catch((err: unknown) => logger.warn("bus prune failed", { err }));
  }, config.outbox.pruneIntervalMs);
  pruneTimer.unref?.();

  logger.info("platform started", { modules: hosted.map((m) => m.name), ...(threads.length > 0 && { threads: threads.map((t) => t.modules) }), remotes: remotes.map((r) => r.name), dataDir: config.dataDir, bus: bus.kind, relay: config.outbox.relay });

  return {
    config,
    logger,
    metrics,
    app: http.app,
    bus,
    readModels,
    fetch: async (req) => http.app.fetch(req),
    client,
    storage(module) {
      const s = storages.get(module);
      if (s) return s;
      if (threads.some((t) => t.modules.includes(module))) throw new Error(`module ${module} runs on a module thread (threads.workers): its storage belongs to that thread`);
      throw new Error(`module ${module} is not hosted by this platform`);
    },
    ready,
    get moduleRoutes() {
      return moduleRoutes;
    },
    async listen() {
      const Bun = (globalThis as { Bun?: typeof import("bun") }).Bun;
      if (!Bun) throw new Error("listen() needs the Bun runtime; under Node use platform.fetch()");
      const s = Bun.serve({
        port: config.port,
        hostname: config.host,
        idleTimeout: config.http.idleTimeoutSeconds,
        // Bun's own cap answers an empty 413; keep it well above http.maxBodyBytes so the app's
        // limit (413 in the one error shape) is what clients normally meet.
        maxRequestBodySize: Math.max(config.http.maxBodyBytes * 16, 16 * 1024 * 1024),
        // The peer's address only when a route asks (the admin guard): it costs a syscall.
        fetch: (req, srv) =>
          http.app.fetch(req, {
            get ip() {
              return srv.requestIP(req)?.address;
            },
          } satisfies ConnectionInfo),
      });
      server = s;
      const port = s.port!;
      const url = `http://${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${port}`;
      if (config.grpc.port !== undefined) {
        const g = { port: config.grpc.port, host: config.grpc.host ?? config.host, bindings: servedBindings, logger, tracer, readMaxBytes: config.http.maxBodyBytes };
        grpcServer = await startGrpcServer(g).catch(async (err) => {
          server = undefined;
          await s.stop();
          throw err;
        });
      }
      const grpcPort = grpcServer?.port;
      logger.info("listening", { port, url, ...(grpcPort !== undefined && { grpcPort }) });
      return { port, url, grpcPort };
    },
    async settle(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (let quiet = 0; ; ) {
        // A thread's handlers publish too: its quiet and this thread's must hold in a row, twice.
        await Promise.all(threads.map((t) => t.call("settle", Math.max(1, deadline - Date.now()))));
        await Promise.all([...relays.map((r) => r.drained()), captures?.drained()]);
        const lag = [...(await bus.consumerLag()).values()].reduce((a, b) => a + b, 0);
        let backlog = 0;
        for (const s of storages.values()) backlog += (await s.outboxStats()).backlog;
        quiet = lag === 0 && backlog === 0 ? quiet + 1 : 0;
        if (quiet >= (threads.length > 0 ? 2 : 1)) return;
        if (Date.now() > deadline) throw new Error(`platform did not settle within ${timeoutMs} ms (consumer lag ${lag}, outbox backlog ${backlog})`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true; // /readyz answers 503 from here on
      clearInterval(pruneTimer);
      if (server && config.shutdown.drainMs > 0) {
        logger.info("draining: not ready, still serving", { drainMs: config.shutdown.drainMs });
        await new Promise((r) => setTimeout(r, config.shutdown.drainMs));
      }
      // A rebuild streaming its progress would hold the listener open: abort it first (the live read model stays as it was).
      await readModels.stop();
      await Promise.all([server?.stop(), grpcServer?.stop()]);
      if (server) logger.info("stopped taking requests; in-flight requests finished");
      await cleanup();
      logger.info("platform stopped");
    },
  };
}

/**
 * Each subscription's linger: `bus.lingerMs.<module>.<name>` over the subscription's own. A name
 * there that the module does not subscribe under is refused, naming the module's subscriptions.
 */
function lingersOf(config: PlatformConfig, module: string, specs: readonly SubscriptionSpec[]): Map<string, number | undefined> {
  const set = config.bus.lingerMs[module] ?? {};
  const names = specs.map((s) => s.name);
  const unknown = Object.keys(set).filter((n) => !names.includes(n));
  if (unknown.length > 0) throw new Error(unknown.map((n) => `bus.lingerMs.${module}.${n}: module ${module} has no subscription "${n}" (${names.length > 0 ? `its subscriptions: ${names.join(", ")}` : "it has none"})`).join("\n"));
  return new Map(specs.map((s) => [s.name, set[s.name] ?? s.lingerMs]));
}

/** Routes as registered, once each, without middleware (`ALL`). */
function uniqueRoutes(routes: ReadonlyArray<{ method: string; path: string }>): Array<{ method: string; path: string }> {
  const seen = new Map<string, { method: string; path: string }>();
  for (const r of routes) if (r.method !== "ALL") seen.set(`${r.method} ${r.path}`, { method: r.method, path: r.path });
  return [...seen.values()];
}

/**
 * Routes the main thread's app forwards to module threads: every route of their modules, and the
 * read-model admin for the read models they host (the list merges every thread's).
 */
function mountThreadRoutes(threads: readonly ModuleThread[], o: { app: Hono; tracer: Tracer; readModels: ReadModels; token: string | undefined }): void {
  // The thread continues this thread's trace (the request's span), as a remote call would.
  const traceparent = () => {
    const t = o.tracer.current();
    return t && formatTraceparent(t);
  };
  for (const t of threads) for (const r of t.routes) o.app.on(r.method, r.path, (c) => t.fetch(c.req.raw, traceparent()));
  const hosting = threads.filter((t) => t.readModels.length > 0);
  if (hosting.length === 0) return;
  const guard = adminGuard(o.token);
  o.app.get("/admin/v1/read-models", guard, async (c) => {
    const theirs = await Promise.all(hosting.map(async (t) => ((await (await t.fetch(c.req.raw, traceparent())).json()) as { readModels: unknown[] }).readModels));
    return c.json({ readModels: [...(await o.readModels.list()), ...theirs.flat()] });
  });
  o.app.post("/admin/v1/read-models/:consumer/replay", guard, async (c, next) => {
    const t = hosting.find((h) => h.readModels.includes(c.req.param("consumer")));
    if (!t) return next();
    return t.fetch(c.req.raw, traceparent());
  });
}
