import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { NotificationSchema, NotificationService, type Notification as NotificationMsg } from "../../gen/notifications/v1/notifications_pb.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { Notification } from "./domain/notification.ts";
import { ListNotificationsInput } from "./queries/inputs.ts";
import { listNotifications } from "./queries/list-notifications.ts";

/** Domain notification -> proto. */
export function toProto(n: Notification): NotificationMsg {
  return create(NotificationSchema, { orderId: n.orderId, customerId: n.customerId, kind: n.kind, message: n.message, createdAt: timestampFromMs(n.createdAt) });
}

/** The Connect implementation of notifications.v1.NotificationService. */
export function notificationsRpc(storage: ModuleStorage): ServiceImpl<typeof NotificationService> {
  return {
    async listNotifications(req) {
      const { customerId } = parseOrThrow(ListNotificationsInput, { customerId: req.customerId });
      return { notifications: (await listNotifications(storage, customerId)).map(toProto) };
    },
  };
}
