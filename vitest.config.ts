import { defineConfig } from "vitest/config";

// The suite runs twice (see README): `vitest run` on Node covers better-sqlite3,
// `bun --bun vitest run` covers bun:sqlite, the production driver. Each run has two projects:
// every test on embedded storage, and the module contract tests again with their modules on
// Postgres + NATS (test/support/platform.ts, TEST_TOPOLOGY) — same tests, same assertions.
const exclude = ["node_modules/**", "test/architecture/fixtures/**", "data/**"];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The machine has 2 cores; e2e tests start child processes.
    maxWorkers: 2,
    pool: "forks",
    // Drops what killed runs left on the shared Postgres (replication slots above all).
    globalSetup: ["test/support/global-setup.ts"],
    projects: [
      { extends: true, test: { name: "embedded", include: ["**/*.test.ts"], exclude } },
      {
        extends: true,
        test: {
          name: "postgres",
          include: ["modules/**/*.contract.test.ts", "test/contracts/*.contract.test.ts"],
          exclude,
          env: { SELARAS_TEST_TOPOLOGY: "postgres" },
        },
      },
    ],
  },
});
