import type { ModuleStorage } from "../../../platform/module.ts";
import type { Notification } from "../domain/notification.ts";
import { notificationStore } from "../db/store.ts";

/** A customer's notifications, oldest first; an unknown customer has none. */
export function listNotifications(storage: ModuleStorage, customerId: string): Promise<Notification[]> {
  return notificationStore.ofCustomer(storage, customerId);
}
