import { defineConfig } from "vitest/config";

// The suite runs twice (see README): `vitest run` on Node covers better-sqlite3,
// `bun --bun vitest run` covers bun:sqlite, the production driver.
export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", "test/architecture/fixtures/**", "data/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The machine has 2 cores; e2e tests start child processes.
    maxWorkers: 2,
    pool: "forks",
  },
});
