import * as z from "zod";
import { daysBetween, isDay } from "../domain/sales.ts";

/** The longest range GetProductSales serves, in days after the first. */
export const MAX_RANGE_DAYS = 366;

const productId = z.string({ error: "required" }).min(1, "must not be empty").max(64, "must be at most 64 characters");
const day = z.string({ error: "required: a UTC day YYYY-MM-DD" }).refine(isDay, "must be a UTC day YYYY-MM-DD");

/** What GetProductSales needs, whatever the adapter called the fields. */
export interface ProductSalesInput {
  readonly productId: string;
  readonly from: string;
  readonly to: string;
}

/**
 * Input of GetProductSales with the adapter's own field names (REST `from`/`to`, RPC
 * `fromDay`/`toDay`), so a 400 names the field the caller sent.
 */
export function productSalesInput(fromKey: string, toKey: string): z.ZodType<ProductSalesInput> {
  return z
    .strictObject({ productId, [fromKey]: day, [toKey]: day })
    .superRefine((v, ctx) => {
      const [from, to] = [(v as Record<string, string>)[fromKey]!, (v as Record<string, string>)[toKey]!];
      if (to < from) ctx.addIssue({ code: "custom", path: [toKey], message: `must not be before ${fromKey}` });
      else if (daysBetween(from, to) > MAX_RANGE_DAYS) ctx.addIssue({ code: "custom", path: [toKey], message: `must be at most ${MAX_RANGE_DAYS} days after ${fromKey}` });
    })
    .transform((v) => ({ productId: (v as Record<string, string>).productId!, from: (v as Record<string, string>)[fromKey]!, to: (v as Record<string, string>)[toKey]! }));
}

/** Input of ListDailySales, shared by the REST and RPC adapters. */
export const DailySalesInput = z.strictObject({ day });
