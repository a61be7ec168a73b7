import * as z from "zod";

const saga = z
  .strictObject({
    paymentTimeoutMs: z.int().positive().default(30_000).describe("How long the saga waits for payments to charge an order before it voids the payment and cancels (payment-timeout)."),
    stockTimeoutMs: z.int().positive().default(30_000).describe("How long a paid order waits for inventory to reserve it before it is refunded, released and cancelled (stock-timeout)."),
    compensationRetryMs: z.int().positive().default(5_000).describe("How long to wait for a refund or release to be acknowledged before requesting it again; doubles with each attempt."),
    compensationMaxAttempts: z.int().min(1).max(100).default(6).describe("Requests of a compensation before the saga stops in STUCK for an operator (ResumeSaga)."),
    sweepIntervalMs: z.int().positive().default(250).describe("How often this process looks for sagas whose deadline has passed."),
    maxInFlight: z
      .int()
      .min(0)
      .default(5_000)
      .describe(
        "Sagas not done yet (all instances', read from the orders database every second) at which PlaceOrder refuses new orders (429, reason orders-overloaded, Retry-After) until the backlog drains. Orders accepted faster than the saga finishes them would otherwise wait past paymentTimeoutMs/stockTimeoutMs and be cancelled. Keep it below what the system finishes within those timeouts (measured here on 2 cores: ~1,470–1,500 sagas/s embedded, ~350/s on Postgres + NATS). 0: no limit.",
      ),
  })
  .prefault({})
  .describe("The order-placement saga.");

/** The orders module's config slice (`modules.orders` in the config file). */
export const OrdersConfig = z.strictObject({
  idempotencyKeyRetentionHours: z
    .number()
    .positive()
    .default(24)
    .describe("How long an Idempotency-Key is remembered; a retry after that places a new order."),
  saga,
});
export type OrdersConfig = z.output<typeof OrdersConfig>;
