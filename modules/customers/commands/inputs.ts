import * as z from "zod";

// Trim before the format check: z.email().trim() would check the untrimmed string.
const email = z.string().trim().pipe(z.email("must be an email address").max(254, "must be at most 254 characters"));
const name = z.string().trim().min(1, "must not be empty").max(200, "must be at most 200 characters");
const creditLimitCents = z.int("must be an integer number of cents").min(0, "must not be negative").max(1_000_000_000_000, "must be at most 1e12");

/** Input of RegisterCustomer (`CreateCustomer` over RPC, `POST /api/v1/customers`), shared by both adapters. */
export const RegisterCustomerInput = z.strictObject({ email, name, creditLimitCents });
export type RegisterCustomerInput = z.output<typeof RegisterCustomerInput>;

/** A customer id: a non-empty string. */
export const CustomerId = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");
