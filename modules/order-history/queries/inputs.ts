import * as z from "zod";

/** Input of ListCustomerOrders, shared by the REST and RPC adapters. */
export const ListCustomerOrdersInput = z.strictObject({
  customerId: z.string().min(1, "must not be empty").max(64, "must be at most 64 characters"),
});
export type ListCustomerOrdersInput = z.output<typeof ListCustomerOrdersInput>;
