import type { Context } from "hono";
import type * as z from "zod";
import { invalidArgument, type FieldViolation } from "../rpc/errors.ts";

/** Formats a zod issue path as `lines[0].quantity`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "(body)";
}

/** One violation per bad field (the first problem zod found with it). */
export function violationsOf(error: z.ZodError): FieldViolation[] {
  const byField = new Map<string, string>();
  for (const i of error.issues) {
    const field = fieldPath(i.path);
    if (!byField.has(field)) byField.set(field, i.message);
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
