import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { errorResponse } from "../http/errors.ts";
import { toPublicError } from "../rpc/errors.ts";
import { adminGuard, type ConnectionInfo } from "./http.ts";

/** An app with one guarded route, answering errors the way the platform's app does. */
function app(token?: string) {
  const a = new Hono();
  a.onError((err, c) => errorResponse(c, toPublicError(err)));
  a.get("/admin/v1/x", adminGuard(token), (c) => c.text("ok"));
  return (ip?: string, authorization?: string) =>
    a.fetch(new Request("http://selaras/admin/v1/x", { headers: authorization ? { authorization } : {} }), ip === undefined ? undefined : ({ ip } satisfies ConnectionInfo));
}

describe("admin endpoints guard", () => {
  it("without admin.token answers loopback clients and in-process calls only", async () => {
    const call = app();
    expect((await call("127.0.0.1")).status).toBe(200);
    expect((await call("::1")).status).toBe(200);
    expect((await call("::ffff:127.0.0.1")).status).toBe(200);
    expect((await call(undefined)).status).toBe(200); // platform.fetch: no socket at all
    const remote = await call("10.1.2.3");
    expect(remote.status).toBe(403);
    expect(((await remote.json()) as { message: string }).message).toMatch(/loopback clients only; set admin.token/);
  });

  it("with admin.token requires it from everyone, loopback included", async () => {
    const call = app("s3cret-token-0123456789");
    expect((await call("10.1.2.3", "Bearer s3cret-token-0123456789")).status).toBe(200);
    expect((await call("127.0.0.1")).status).toBe(401);
    expect((await call("127.0.0.1", "Bearer s3cret-token-012345678X")).status).toBe(401);
    expect((await call(undefined, "Bearer short")).status).toBe(401);
  });
});
