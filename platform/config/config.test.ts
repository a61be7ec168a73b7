import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, configHelp, loadConfig, type LoadConfigOptions } from "./index.ts";

const dir = mkdtempSync(join(tmpdir(), "selaras-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes a config file into the temp dir; returns its absolute path. */
function writeConfig(content: unknown, ext = ".json"): string {
  const path = join(dir, `config-${++fileCount}${ext}`);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** The problems `loadConfig` throws, or fails the test when it does not throw. */
function problemsOf(opts: LoadConfigOptions): readonly string[] {
  try {
    loadConfig(opts);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const error = e as ConfigError;
    expect(error.message.split("\n")).toEqual(error.problems);
    return error.problems;
  }
  throw new Error("expected loadConfig to throw a ConfigError");
}

describe("defaults", () => {
  it("gives the documented defaults with no input", () => {
    expect(loadConfig({})).toEqual({
      config: {
        port: 3000,
        host: "0.0.0.0",
        dataDir: "./data",
        logLevel: "info",
        serviceName: "selaras",
        http: { maxBodyBytes: 1_048_576, idleTimeoutSeconds: 30 },
        rpc: { timeoutMs: 5000, retry: { maxAttempts: 3, initialDelayMs: 50, maxDelayMs: 1000 }, breaker: { threshold: 5, halfOpenAfterMs: 1000 } },
        grpc: {}, // no gRPC server unless grpc.port is set
        outbox: { batchSize: 500, retentionHours: 168, pruneIntervalMs: 60_000, relay: "poll" },
        bus: {
          kind: "embedded",
          retentionHours: 168,
          maxDeliver: 5,
          backoffMs: [100, 500, 2000, 10_000],
          batchSize: 256,
          lingerMs: {},
          nats: {
            servers: ["nats://127.0.0.1:4222"],
            prefix: "selaras",
            partitions: 4,
            duplicateWindowSeconds: 120,
            ackWaitSeconds: 30,
            maxAckPending: 512,
            leaseSeconds: 10,
            requestTimeoutMs: 5000,
            reconnectWaitMs: 250,
            replicas: 1,
          },
        },
        storage: {
          kind: "sqlite",
          postgres: { url: "postgres://postgres@127.0.0.1:5432/postgres", schemaPrefix: "selaras", provision: true, moduleUrls: {}, poolSize: 2, maxInFlight: 1, maxBatch: 256, client: "auto" },
        },
        sqlite: { synchronous: "NORMAL", walAutocheckpointPages: 1000, checkpoint: "background" },
        shutdown: { drainMs: 0, timeoutMs: 30_000 },
        threads: {}, // the binary decides (main.ts withDefaultThreads)
        admin: {},
        cdc: { heartbeatMs: 10_000, postgres: {} }, // capture slots stream as storage.postgres.url's administrator
        topology: { processes: {} },
        modules: {},
      },
      command: [],
      help: false,
    });
  });

  it("fills the rest of a group a file only partly sets", () => {
    const file = writeConfig({ http: { maxBodyBytes: 10 } });
    expect(loadConfig({ argv: ["--config", file] }).config.http).toEqual({ maxBodyBytes: 10, idleTimeoutSeconds: 30 });
  });

  it("enables the gRPC server only when grpc.port is set (0 picks a free port)", () => {
    expect(loadConfig({ env: { PORT: "0" } }).config.grpc.port).toBeUndefined();
    expect(loadConfig({ env: { SELARAS_GRPC__PORT: "50051" } }).config.grpc).toEqual({ port: 50051 });
    expect(loadConfig({ argv: ["--set", "grpc.port=0", "--set", "grpc.host=127.0.0.1"] }).config.grpc).toEqual({ port: 0, host: "127.0.0.1" });
    expect(problemsOf({ argv: ["--set", "grpc.port=70000"] })[0]).toMatch(/^grpc\.port: expected an integer between 0 and 65535/);
  });

  it("does not share default arrays or records between loads", () => {
    const a = loadConfig({}).config;
    a.bus.backoffMs.push(1);
    a.modules.x = 1;
    const b = loadConfig({}).config;
    expect(b.bus.backoffMs).toEqual([100, 500, 2000, 10_000]);
    expect(b.modules).toEqual({});
  });
});

describe("precedence: default < file < env < CLI", () => {
  it("lets each later source win key by key", () => {
    const file = writeConfig({ port: 1, logLevel: "debug", dataDir: "/file", outbox: { batchSize: 10, retentionHours: 1 } });
    const { config } = loadConfig({
      argv: ["--config", file, "--port", "3"],
      env: { PORT: "2", SELARAS_OUTBOX__BATCH_SIZE: "20", SELARAS_DATA_DIR: "/env" },
    });
    expect(config.port).toBe(3); // CLI over env over file
    expect(config.outbox.batchSize).toBe(20); // env over file
    expect(config.dataDir).toBe("/env");
    expect(config.logLevel).toBe("debug"); // file over default
    expect(config.outbox.retentionHours).toBe(1);
    expect(config.host).toBe("0.0.0.0"); // default
  });

  it("prefers SELARAS_PORT and SELARAS_HOST over PORT and HOST", () => {
    expect(loadConfig({ env: { PORT: "1", HOST: "h" } }).config).toMatchObject({ port: 1, host: "h" });
    expect(loadConfig({ env: { PORT: "1", SELARAS_PORT: "2", HOST: "h", SELARAS_HOST: "s" } }).config).toMatchObject({ port: 2, host: "s" });
  });

  it("applies flags in order, so a later --set overrides --port", () => {
    expect(loadConfig({ argv: ["--port", "1", "--set", "port=2"] }).config.port).toBe(2);
    expect(loadConfig({ argv: ["--set", "port=2", "--port=1"] }).config.port).toBe(1);
  });

  it("reads the file named by SELARAS_CONFIG, unless --config names another", () => {
    const fromEnv = writeConfig({ serviceName: "env-file" });
    const fromFlag = writeConfig({ serviceName: "flag-file" });
    expect(loadConfig({ env: { SELARAS_CONFIG: fromEnv } }).config.serviceName).toBe("env-file");
    expect(loadConfig({ argv: ["--config", fromFlag], env: { SELARAS_CONFIG: fromEnv } }).config.serviceName).toBe("flag-file");
  });

  it("resolves a relative --config against cwd", () => {
    const file = writeConfig({ serviceName: "relative" });
    expect(loadConfig({ argv: ["--config", file.slice(dir.length + 1)], cwd: dir }).config.serviceName).toBe("relative");
  });

  it("reads only the env and argv it is given, not process globals", () => {
    const saved = process.env.SELARAS_PORT;
    process.env.SELARAS_PORT = "4321";
    try {
      expect(loadConfig({ env: {} }).config.port).toBe(3000);
    } finally {
      if (saved === undefined) delete process.env.SELARAS_PORT;
      else process.env.SELARAS_PORT = saved;
    }
  });
});

describe("env and flag coercion", () => {
  it("maps SELARAS_ names to nested camelCase keys and coerces by type", () => {
    const { config } = loadConfig({
      env: {
        SELARAS_HTTP__IDLE_TIMEOUT_SECONDS: "0",
        SELARAS_OUTBOX__RETENTION_HOURS: "0.5",
        SELARAS_SQLITE__SYNCHRONOUS: "FULL",
        SELARAS_PROCESS: "edge",
        SELARAS_MODULES: '{"orders":{"maxLines":10}}',
      },
    });
    expect(config.http.idleTimeoutSeconds).toBe(0);
    expect(config.outbox.retentionHours).toBe(0.5);
    expect(config.sqlite.synchronous).toBe("FULL");
    expect(config.process).toBe("edge");
    expect(config.modules).toEqual({ orders: { maxLines: 10 } });
  });

  it("accepts arrays as JSON or as comma lists", () => {
    expect(loadConfig({ env: { SELARAS_BUS__BACKOFF_MS: "[100,200]" } }).config.bus.backoffMs).toEqual([100, 200]);
    expect(loadConfig({ env: { SELARAS_BUS__BACKOFF_MS: "10, 20,30" } }).config.bus.backoffMs).toEqual([10, 20, 30]);
    expect(loadConfig({ argv: ["--set", "bus.backoffMs=7"] }).config.bus.backoffMs).toEqual([7]);
  });

  it("takes a list of lists with `;` between the lists and `,` within one", () => {
    const workers = (v: string) => loadConfig({ argv: ["--set", `threads.workers=${v}`] }).config.threads.workers;
    expect(workers("payments,inventory")).toEqual([["payments", "inventory"]]);
    expect(workers("payments,inventory;analytics")).toEqual([["payments", "inventory"], ["analytics"]]);
    expect(workers('[["payments"],["inventory"]]')).toEqual([["payments"], ["inventory"]]);
    expect(loadConfig({ env: { SELARAS_THREADS__WORKERS: "a; b,c" } }).config.threads.workers).toEqual([["a"], ["b", "c"]]);
  });

  it("ignores SELARAS_ variables that name no key", () => {
    expect(loadConfig({ env: { SELARAS_NOPE: "x", SELARAS_OUTBOX__NOPE: "1" } }).config).toEqual(loadConfig({}).config);
  });

  it("sets any key with repeatable --set, including free-form module slices", () => {
    const { config } = loadConfig({
      argv: ["--set", "outbox.batchSize=42", "--set", "modules.orders.maxLines=10", "--set", "modules.orders.name=shop", "--set", "rpc.timeoutMs=7"],
    });
    expect(config.outbox.batchSize).toBe(42);
    expect(config.rpc.timeoutMs).toBe(7);
    expect(config.modules).toEqual({ orders: { maxLines: 10, name: "shop" } });
  });

  it("sets a consumer's linger by module and subscription, and names a bad one by its path", () => {
    const { config } = loadConfig({ argv: ["--set", "bus.lingerMs.order-history.projection=50", "--set", "bus.lingerMs.analytics.sales=0"] });
    expect(config.bus.lingerMs).toEqual({ "order-history": { projection: 50 }, analytics: { sales: 0 } });
    expect(problemsOf({ argv: ["--set", "bus.lingerMs.analytics.sales=-1"] })).toEqual([expect.stringMatching(/^bus\.lingerMs\.analytics\.sales: must be 0 ms or more.*\(from --set\)$/)]);
    expect(problemsOf({ argv: ["--set", "bus.lingerMs.analytics.sales=60000"] })).toEqual([expect.stringMatching(/^bus\.lingerMs\.analytics\.sales: must be at most 5000 ms.*\(from --set\)$/)]);
    expect(problemsOf({ argv: ["--set", "bus.lingerMs.analytics=20"] })).toEqual([expect.stringMatching(/^bus\.lingerMs\.analytics: .*\(from --set\)$/)]);
  });

  it("merges --set module keys into the module slice from the file", () => {
    const file = writeConfig({ modules: { orders: { a: 1 } } });
    const { config } = loadConfig({ argv: ["--config", file, "--set", "modules.orders.b=2"] });
    expect(config.modules).toEqual({ orders: { a: 1, b: 2 } });
  });

  it("sets the named flags", () => {
    const { config } = loadConfig({ argv: ["--host", "127.0.0.1", "--data-dir", "/d", "--log-level", "warn", "--process", "orders", "--port=0"] });
    expect(config).toMatchObject({ host: "127.0.0.1", dataDir: "/d", logLevel: "warn", process: "orders", port: 0 });
  });
});

describe("positionals and help", () => {
  it("returns positionals as the command, wherever they appear", () => {
    expect(loadConfig({ argv: ["replay", "--port", "1", "order-history"] })).toMatchObject({ command: ["replay", "order-history"], config: { port: 1 } });
    expect(loadConfig({ argv: ["--", "--port", "x"] }).command).toEqual(["--port", "x"]);
  });

  it("reports --help and -h without validating the rest", () => {
    expect(loadConfig({ argv: ["--help"] }).help).toBe(true);
    expect(loadConfig({ argv: ["-h", "--bogus"], env: { PORT: "x" } })).toMatchObject({ help: true, config: { port: 3000 } });
  });

  it("lists every key with its env var, type and default", () => {
    const help = configHelp();
    expect(help).toContain("Usage: bun run main.ts [--config FILE] [--process NAME] [flags]");
    for (const flag of ["--config FILE", "--port", "--host", "--data-dir DIR", "--log-level LEVEL", "--process NAME", "--set KEY=VALUE", "--help"]) {
      expect(help).toContain(flag);
    }
    // Written out by hand, so a key missing from the derived table fails here.
    const keys: Record<string, string> = {
      port: "SELARAS_PORT", host: "SELARAS_HOST", dataDir: "SELARAS_DATA_DIR", logLevel: "SELARAS_LOG_LEVEL",
      serviceName: "SELARAS_SERVICE_NAME", process: "SELARAS_PROCESS",
      "http.maxBodyBytes": "SELARAS_HTTP__MAX_BODY_BYTES", "http.idleTimeoutSeconds": "SELARAS_HTTP__IDLE_TIMEOUT_SECONDS",
      "rpc.timeoutMs": "SELARAS_RPC__TIMEOUT_MS", "grpc.port": "SELARAS_GRPC__PORT", "grpc.host": "SELARAS_GRPC__HOST", "outbox.batchSize": "SELARAS_OUTBOX__BATCH_SIZE",
      "outbox.retentionHours": "SELARAS_OUTBOX__RETENTION_HOURS", "outbox.pruneIntervalMs": "SELARAS_OUTBOX__PRUNE_INTERVAL_MS",
      "outbox.relay": "SELARAS_OUTBOX__RELAY",
      "bus.kind": "SELARAS_BUS__KIND", "bus.retentionHours": "SELARAS_BUS__RETENTION_HOURS", "bus.maxDeliver": "SELARAS_BUS__MAX_DELIVER",
      "bus.backoffMs": "SELARAS_BUS__BACKOFF_MS", "bus.batchSize": "SELARAS_BUS__BATCH_SIZE",
      "sqlite.synchronous": "SELARAS_SQLITE__SYNCHRONOUS", modules: "SELARAS_MODULES",
    };
    for (const [key, env] of Object.entries(keys)) expect(help).toMatch(new RegExp(`^  ${key.replace(".", "\\.")} .*${env}$`, "m"));
    expect(help).toMatch(/^ {2}port +integer between 0 and 65535 +3000 +PORT, SELARAS_PORT$/m);
    expect(help).toMatch(/^ {2}bus\.backoffMs .*\[100,500,2000,10000\]/m);
    expect(help).toContain("power loss"); // sqlite.synchronous explains durability
  });
});

describe("errors name the key, the problem and the source", () => {
  it("reports a bad value from the environment", () => {
    expect(problemsOf({ env: { SELARAS_OUTBOX__BATCH_SIZE: "abc" } })).toEqual([
      'outbox.batchSize: expected an integer between 1 and 10000, got "abc" (from env SELARAS_OUTBOX__BATCH_SIZE)',
    ]);
    expect(problemsOf({ env: { PORT: "" } })).toEqual(['port: expected an integer between 0 and 65535, got "" (from env PORT)']);
  });

  it("reports a bad value from a flag or --set", () => {
    expect(problemsOf({ argv: ["--port", "70000"] })).toEqual(['port: expected an integer between 0 and 65535, got "70000" (from --port)']);
    expect(problemsOf({ argv: ["--set", "bus.maxDeliver=0"] })).toEqual(['bus.maxDeliver: expected an integer >= 1, got "0" (from --set)']);
    expect(problemsOf({ argv: ["--log-level", "loud"] })).toEqual([
      'logLevel: expected one of "debug", "info", "warn", "error", got "loud" (from --log-level)',
    ]);
  });

  it("reports a bad value from the file, by the path as given", () => {
    const file = writeConfig({ logLevel: "loud", outbox: { retentionHours: -1 }, http: 5 });
    expect(problemsOf({ argv: ["--config", file] })).toEqual([
      `logLevel: expected one of "debug", "info", "warn", "error", got "loud" (from file ${file})`,
      `http: expected an object, got 5 (from file ${file})`,
      `outbox.retentionHours: expected a non-negative number, got -1 (from file ${file})`,
    ]);
  });

  it("reports a bad array once, with the value as typed", () => {
    expect(problemsOf({ env: { SELARAS_BUS__BACKOFF_MS: "100,-5,x" } })).toEqual([
      'bus.backoffMs: expected a non-empty array of positive integers, got "100,-5,x" (from env SELARAS_BUS__BACKOFF_MS)',
    ]);
    expect(problemsOf({ env: { SELARAS_BUS__BACKOFF_MS: "[1," } })).toHaveLength(1);
  });

  it("accepts the two bus kinds and rejects others; the NATS prefix must be a subject token", () => {
    expect(loadConfig({ env: { SELARAS_BUS__KIND: "nats", SELARAS_BUS__NATS__SERVERS: "nats://a:4222,nats://b:4222" } }).config.bus).toMatchObject({
      kind: "nats",
      nats: { servers: ["nats://a:4222", "nats://b:4222"], prefix: "selaras" },
    });
    expect(problemsOf({ env: { SELARAS_BUS__KIND: "kafka" } })).toEqual(['bus.kind: expected one of "embedded", "nats", got "kafka" (from env SELARAS_BUS__KIND)']);
    const [prefixProblem, ...rest] = problemsOf({ argv: ["--set", "bus.nats.prefix=a.b"] });
    expect([prefixProblem, rest]).toEqual([expect.stringMatching(/^bus\.nats\.prefix: .*, got "a\.b" \(from --set\)$/), []]);
  });

  it("relays the outbox by polling or from the WAL, the latter only on Postgres, naming where the setting came from", () => {
    expect(loadConfig({ env: { SELARAS_OUTBOX__RELAY: "cdc", SELARAS_STORAGE__KIND: "postgres" } }).config.outbox.relay).toBe("cdc");
    expect(problemsOf({ env: { SELARAS_OUTBOX__RELAY: "wal" } })).toEqual(['outbox.relay: expected one of "poll", "cdc", got "wal" (from env SELARAS_OUTBOX__RELAY)']);
    const noWal = 'outbox.relay: "cdc" streams the outbox from the Postgres WAL, but storage.kind is "sqlite" and embedded SQLite has no WAL to decode; set storage.kind = "postgres" or outbox.relay = "poll"';
    expect(problemsOf({ env: { SELARAS_OUTBOX__RELAY: "cdc" } })).toEqual([`${noWal} (from env SELARAS_OUTBOX__RELAY)`]);
    // A process of a topology may set it for itself (outbox is a per-process key).
    const file = writeConfig({ topology: { processes: { a: { modules: ["x"], outbox: { relay: "cdc" } } } } });
    expect(problemsOf({ argv: ["--config", file, "--process", "a"] })).toEqual([`${noWal} (from file ${file}: topology.processes.a)`]);
  });

  it("names unknown keys in the file, top-level and nested", () => {
    const file = writeConfig({ prot: 1, outbox: { batchSise: 1 }, modules: { anything: { goes: true } } });
    expect(problemsOf({ argv: ["--config", file] })).toEqual([
      `outbox.batchSise: unknown key (from file ${file})`,
      `prot: unknown key (from file ${file})`,
    ]);
  });

  it("treats a __proto__ key in a file as unknown instead of polluting anything", () => {
    const file = writeConfig('{"__proto__": {"port": 1}}');
    expect(problemsOf({ argv: ["--config", file] })).toEqual([`__proto__: unknown key (from file ${file})`]);
    expect(({} as Record<string, unknown>).port).toBeUndefined();
  });

  it("names unknown flags, missing values and unknown --set keys", () => {
    expect(problemsOf({ argv: ["--bogus"] })).toEqual(["--bogus: unknown flag (see --help)"]);
    expect(problemsOf({ argv: ["-x"] })).toEqual(["-x: unknown flag (see --help)"]);
    expect(problemsOf({ argv: ["--port"] })).toEqual(["--port: missing value"]);
    expect(problemsOf({ argv: ["--config", "--port", "1"] })).toEqual(["--config: missing value"]);
    expect(problemsOf({ argv: ["--set", "outbox.nope=1"] })).toEqual(["outbox.nope: unknown key (from --set; see --help)"]);
    expect(problemsOf({ argv: ["--set", "port"] })).toEqual(["--set port: expected KEY=VALUE, e.g. --set outbox.batchSize=1000"]);
  });

  it("reports a missing file with its path and how it was chosen", () => {
    const [problem, ...rest] = problemsOf({ argv: ["--config", "missing.json"], cwd: dir });
    expect(rest).toEqual([]);
    expect(problem).toBe(`config file missing.json: not found at ${join(dir, "missing.json")} (from --config)`);
    expect(problemsOf({ env: { SELARAS_CONFIG: join(dir, "nope.json") } })[0]).toMatch(/nope\.json: not found .*\(from env SELARAS_CONFIG\)$/);
  });

  it("reports invalid JSON and a top level that is not an object", () => {
    const broken = writeConfig("{ port: 1 ");
    expect(problemsOf({ argv: ["--config", broken] })[0]).toMatch(new RegExp(`^config file ${broken}: invalid JSON: .+ \\(from --config\\)$`));
    const list = writeConfig([1, 2]);
    expect(problemsOf({ argv: ["--config", list] })).toEqual([`config file ${list}: expected an object at the top level (from --config)`]);
  });

  it("reports every problem together, one per line", () => {
    const file = writeConfig({ port: "x", nope: 1 });
    const problems = problemsOf({ argv: ["--config", file, "--bogus", "--set", "rpc.timeoutMs=-1"], env: { SELARAS_OUTBOX__BATCH_SIZE: "0" } });
    expect(problems).toEqual([
      "--bogus: unknown flag (see --help)",
      `port: expected an integer between 0 and 65535, got "x" (from file ${file})`,
      'rpc.timeoutMs: expected a positive integer, got "-1" (from --set)',
      'outbox.batchSize: expected an integer between 1 and 10000, got "0" (from env SELARAS_OUTBOX__BATCH_SIZE)',
      `nope: unknown key (from file ${file})`,
    ]);
  });

  it("blames the source that set the value last", () => {
    const file = writeConfig({ port: 1 });
    expect(problemsOf({ argv: ["--config", file], env: { SELARAS_PORT: "x" } })).toEqual([
      'port: expected an integer between 0 and 65535, got "x" (from env SELARAS_PORT)',
    ]);
  });
});

describe("topology: a process's own section", () => {
  const topology = (processes: Record<string, unknown>, shared: Record<string, unknown> = {}) =>
    writeConfig({ port: 3000, dataDir: "/shared", rpc: { timeoutMs: 100 }, bus: { kind: "nats" }, ...shared, topology: { processes } });

  it("overrides the shared keys for the chosen process only, below env and flags", () => {
    const file = topology({
      a: { modules: ["catalog"], port: 3001, dataDir: "/a", rpc: { retry: { maxAttempts: 1 } }, url: "http://a:3001" },
      b: { modules: ["orders"], port: 3002 },
    });
    const a = loadConfig({ argv: ["--config", file, "--process", "a"] }).config;
    expect(a).toMatchObject({ process: "a", port: 3001, dataDir: "/a", rpc: { timeoutMs: 100, retry: { maxAttempts: 1, initialDelayMs: 50 } } });
    expect(a.topology.processes.a).toEqual({ modules: ["catalog"], port: 3001, dataDir: "/a", rpc: { retry: { maxAttempts: 1 } }, url: "http://a:3001" });
    expect(loadConfig({ argv: ["--config", file], env: { SELARAS_PROCESS: "b" } }).config).toMatchObject({ port: 3002, dataDir: "/shared" });
    expect(loadConfig({ argv: ["--config", file, "--process", "a"], env: { PORT: "9" } }).config.port).toBe(9);
    expect(loadConfig({ argv: ["--config", file, "--process", "a", "--data-dir", "/flag"] }).config.dataDir).toBe("/flag");
    expect(loadConfig({ argv: ["--config", file] }).config).toMatchObject({ port: 3000, dataDir: "/shared" });
  });

  it("checks every process's section, naming the process, even when another one is chosen", () => {
    const file = topology({
      a: { modules: ["catalog"], port: "x", url: "ftp://a" },
      b: { modules: [], rpc: { timeoutMz: 1 }, bus: { kind: "embedded" } },
      "C!": { modules: ["orders"] },
    });
    expect(problemsOf({ argv: ["--config", file, "--process", "b"] })).toEqual([
      `rpc.timeoutMz: unknown key (from file ${file}: topology.processes.b)`,
      `topology.processes.a.url: expected an http(s) URL such as http://orders:3000 (from file ${file})`,
      `topology.processes.b.modules: expected at least one module (from file ${file})`,
      `topology.processes.b.bus: unknown key (from file ${file})`,
      `topology.processes.C!: expected a kebab-case process name (from file ${file})`,
      `port: expected an integer between 0 and 65535, got "x" (from file ${file}: topology.processes.a)`,
    ]);
  });
});

describe("TOML files", () => {
  const isBun = "Bun" in globalThis;
  const toml = () => writeConfig('port = 4000\n[outbox]\nbatchSize = 9\n', ".toml");

  it.runIf(isBun)("are read under Bun", () => {
    expect(loadConfig({ argv: ["--config", toml()] }).config).toMatchObject({ port: 4000, outbox: { batchSize: 9 } });
  });

  it.runIf(isBun)("report invalid TOML with the path", () => {
    const file = writeConfig("port = = 1", ".toml");
    expect(problemsOf({ argv: ["--config", file] })[0]).toMatch(new RegExp(`^config file ${file}: invalid TOML`));
  });

  it.skipIf(isBun)("fail clearly on Node", () => {
    const file = toml();
    expect(problemsOf({ argv: ["--config", file] })).toEqual([
      `config file ${file}: TOML needs the Bun runtime (Bun.TOML.parse); on Node use a .json file (from --config)`,
    ]);
  });
});
