import * as z from "zod";

const id = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");

/** Input of GetAccount. */
export const GetAccountInput = z.strictObject({ customerId: id });
export type GetAccountInput = z.output<typeof GetAccountInput>;

/** Input of GetPayment. */
export const GetPaymentInput = z.strictObject({ orderId: id });
export type GetPaymentInput = z.output<typeof GetPaymentInput>;
