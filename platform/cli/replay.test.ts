import { describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import { hostingUrl, replayCommand } from "./replay.ts";

const io = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
};

describe("replay command", () => {
  it("takes --until among the config flags, in either spelling", () => {
    expect(loadConfig({ argv: ["replay", "order-history.projection", "--until", "2025-01-31T12:00:00Z", "--port", "4000"] })).toMatchObject({ command: ["replay", "order-history.projection", "--until", "2025-01-31T12:00:00Z"], config: { port: 4000 } });
    expect(loadConfig({ argv: ["--until=2025-01-31", "replay", "x.y"] }).command).toEqual(["--until", "2025-01-31", "replay", "x.y"]);
    expect(() => loadConfig({ argv: ["replay", "x.y", "--until"] })).toThrow(/--until: missing value/);
  });

  it("finds the process hosting the read model: its topology url, else its port, else this config's port", () => {
    const topology = { processes: { core: { modules: ["catalog"], url: "http://core:3001" }, history: { modules: ["order-history"], port: 3003 } } };
    const config = loadConfig({ argv: ["--set", `topology=${JSON.stringify(topology)}`, "--process", "core"] }).config;
    expect(hostingUrl(config, "order-history")).toBe("http://127.0.0.1:3003");
    expect(hostingUrl(config, "catalog")).toBe("http://core:3001");
    expect(hostingUrl(config, "orders")).toBeUndefined();
    expect(hostingUrl(loadConfig({ argv: ["--port", "4000"] }).config, "order-history")).toBe("http://127.0.0.1:4000");
  });

  it("refuses bad usage with exit 2 before calling anyone", async () => {
    const { config } = loadConfig({});
    for (const [args, message] of [
      [[], /Usage:/],
      [["order-history"], /<module>\.<subscription>/],
      [["order-history.projection", "--until", "soon"], /ISO 8601/],
      [["order-history.projection", "ftp://x"], /URL must start with http/],
    ] as const) {
      const o = io();
      expect(await replayCommand(args, config, o.io)).toBe(2);
      expect(o.err.join("\n")).toMatch(message);
    }
  });
});
