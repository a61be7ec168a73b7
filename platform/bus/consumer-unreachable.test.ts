import { describe, expect, it } from "vitest";
import { isUnreachable } from "./consumer.ts";

describe("isUnreachable", () => {
  it("tells an unreachable database from a failing handler, through cause chains", () => {
    const withCode = (code: string) => Object.assign(new Error(code), { code });
    for (const code of ["ECONNREFUSED", "ECONNRESET", "CONNECTION_CLOSED", "CONNECTION_ENDED", "08006", "08001", "53300", "57P01", "SQLITE_BUSY"]) expect(isUnreachable(withCode(code)), code).toBe(true);
    expect(isUnreachable(new Error("Failed query", { cause: withCode("53300") }))).toBe(true);
    for (const code of ["23505", "42501", "22P02", "SQLITE_CONSTRAINT_UNIQUE"]) expect(isUnreachable(withCode(code)), code).toBe(false);
    expect(isUnreachable(new Error("handler bug"))).toBe(false);
  });
});
