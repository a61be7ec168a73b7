import * as z from "zod";

/** The orders module's config slice (`modules.orders` in the config file). */
export const OrdersConfig = z.strictObject({
  idempotencyKeyRetentionHours: z
    .number()
    .positive()
    .default(24)
    .describe("How long an Idempotency-Key is remembered; a retry after that places a new order."),
});
export type OrdersConfig = z.output<typeof OrdersConfig>;
