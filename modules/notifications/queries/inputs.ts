import * as z from "zod";

/** Input of ListNotifications, shared by the REST and RPC adapters. */
export const ListNotificationsInput = z.strictObject({
  customerId: z.string().min(1, "must not be empty").max(64, "must be at most 64 characters"),
});
export type ListNotificationsInput = z.output<typeof ListNotificationsInput>;
