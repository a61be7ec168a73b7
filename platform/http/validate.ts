import type { Context } from "hono";
import type * as z from "zod";
import { invalidArgument } from "../rpc/errors.ts";
import { parseOrThrow, violationsOf } from "../validate.ts";

/**
 * Reads and validates one path parameter; a bad value is InvalidArgument naming the parameter.
 * @example const id = pathParam(c, "id", ProductId);
 */
export function pathParam<S extends z.ZodType>(c: Context, name: string, schema: S): z.output<S> {
  const r = schema.safeParse(c.req.param(name));
  if (!r.success) throw invalidArgument(violationsOf(r.error).map((v) => ({ field: v.field === "(body)" ? name : `${name}.${v.field}`, description: v.description })));
  return r.data;
}

/**
 * Reads and validates a JSON request body: malformed JSON and schema violations both become
 * InvalidArgument (400) naming the problem; the size limit is enforced by the server before this.
 * @example const body = await jsonBody(c, CreateProductBody);
 */
export async function jsonBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    throw invalidArgument([{ field: "(body)", description: "must be valid JSON" }]);
  }
  return parseOrThrow(schema, raw);
}
