import type { Context } from "hono";
import type * as z from "zod";
import { invalidArgument, type FieldViolation } from "../rpc/errors.ts";

/** Formats a zod issue path as `lines[0].quantity`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "(body)";
}

/** One violation per bad field (the first problem zod found with it); each unknown key is its own field. */
export function violationsOf(error: z.ZodError): FieldViolation[] {
  const byField = new Map<string, string>();
  const add = (field: string, description: string) => {
    if (!byField.has(field)) byField.set(field, description);
  };
  for (const i of error.issues) {
    if (i.code === "unrecognized_keys") for (const key of i.keys) add(fieldPath([...i.path, key]), "unknown field");
    else add(fieldPath(i.path), i.message);
  }
  return [...byField].map(([field, description]) => ({ field, description }));
}

/**
 * Parses `value` with `schema`, or throws InvalidArgument naming every bad field.
 * @example const input = parseOrThrow(PlaceOrderBody, body);
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw invalidArgument(violationsOf(r.error));
  return r.data;
}

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
