import * as z from "zod";
import { duplicateLines } from "../domain/order.ts";

const id = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");
const quantity = z.int("must be an integer").min(1, "must be at least 1").max(10_000, "must be at most 10000");
const line = z.strictObject({ productId: id, quantity });

/**
 * Input of PlaceOrder, shared by the REST and RPC adapters. A product may appear on one line
 * only: a repeated product is rejected (naming `lines[i].productId`) rather than merged, so the
 * order keeps exactly the lines the client sent and downstream steps see one line per product.
 */
export const PlaceOrderInput = z
  .strictObject({
    customerId: id,
    lines: z.array(line, "must be a list of lines").min(1, "must hold at least one line").max(100, "must hold at most 100 lines"),
  })
  .superRefine((v, ctx) => {
    for (const d of duplicateLines(v.lines)) {
      ctx.addIssue({ code: "custom", message: `repeats the product of lines[${d.firstIndex}]; give each product one line`, path: ["lines", d.index, "productId"] });
    }
  });
export type PlaceOrderInput = z.output<typeof PlaceOrderInput>;

/** A client-chosen idempotency key: 1..200 characters. */
export const IdempotencyKey = z.string().min(1, "must not be empty").max(200, "must be at most 200 characters");

/** An order id: a non-empty string. */
export const OrderId = id;

/** The RPC's `idempotencyKey` field; the caller maps an empty key (proto default) to undefined. */
export const IdempotencyKeyField = z.object({ idempotencyKey: IdempotencyKey.optional() });

/** The REST `Idempotency-Key` header: absent means no idempotency; present, it must be 1..200 characters. */
export const IdempotencyKeyHeader = z.object({ "Idempotency-Key": IdempotencyKey.optional() });

/** Input of ResumeSaga. */
export const ResumeSagaInput = z.strictObject({ orderId: OrderId });
