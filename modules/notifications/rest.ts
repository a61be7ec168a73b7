import type { Hono } from "hono";
import type { ModuleStorage } from "../../platform/module.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { Notification } from "./domain/notification.ts";
import { ListNotificationsInput } from "./queries/inputs.ts";
import { listNotifications } from "./queries/list-notifications.ts";

/** The public JSON shape of a notification. */
function toJson(n: Notification) {
  return { orderId: n.orderId, kind: n.kind, message: n.message, createdAt: new Date(n.createdAt).toISOString() };
}

/** `GET /api/v1/customers/{id}/notifications`: the customer's notifications, oldest first; unknown customer -> `notifications: []`. */
export function notificationsRoutes(storage: ModuleStorage) {
  return (app: Hono) => {
    app.get("/api/v1/customers/:id/notifications", async (c) => {
      const { customerId } = parseOrThrow(ListNotificationsInput, { customerId: c.req.param("id") });
      return c.json({ customerId, notifications: (await listNotifications(storage, customerId)).map(toJson) });
    });
  };
}
