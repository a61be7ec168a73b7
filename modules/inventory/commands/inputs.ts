import * as z from "zod";
import { MAX_RESTOCK } from "../domain/stock.ts";

/** A product id: what the catalog hands out (inventory does not check that it exists). */
export const productId = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");
const quantity = z.int("must be an integer").min(1, "must be at least 1").max(MAX_RESTOCK, "must be at most 1e9");

/** Input of Restock, shared by the REST and RPC adapters. */
export const RestockInput = z.strictObject({ productId, quantity });
export type RestockInput = z.output<typeof RestockInput>;

/** The body of `POST /api/v1/inventory/{productId}/restock`. */
export const RestockBody = z.strictObject({ quantity });

/** Input of GetStock. */
export const GetStockInput = z.strictObject({ productId });
