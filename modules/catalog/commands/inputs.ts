import * as z from "zod";

const sku = z.string().trim().min(1, "must not be empty").max(64, "must be at most 64 characters").regex(/^[A-Za-z0-9._-]+$/, "may hold only letters, digits, '.', '_' and '-'");
const name = z.string().trim().min(1, "must not be empty").max(200, "must be at most 200 characters");
const priceCents = z.int("must be an integer number of cents").min(0, "must not be negative").max(1_000_000_000_000, "must be at most 1e12");

/** Input of CreateProduct, shared by the REST and RPC adapters. */
export const CreateProductInput = z.strictObject({ sku, name, priceCents });
export type CreateProductInput = z.output<typeof CreateProductInput>;

/** Input of UpdateProduct: at least one of name, priceCents. */
export const UpdateProductInput = z
  .strictObject({ name: name.optional(), priceCents: priceCents.optional() })
  .refine((v) => v.name !== undefined || v.priceCents !== undefined, { message: "give name or priceCents", path: ["(body)"] });
export type UpdateProductInput = z.output<typeof UpdateProductInput>;

/** A product id: a non-empty string. */
export const ProductId = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");
