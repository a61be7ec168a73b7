import type * as z from "zod";
import { invalidArgument, type FieldViolation } from "./rpc/errors.ts";

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
