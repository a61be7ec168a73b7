import { InventoryReleasedSchema, InventoryReservationFailedSchema, InventoryReservedSchema } from "../../../gen/inventory/v1/events_pb.ts";
import type { Tx } from "../../../platform/module.ts";
import type { RefusalReason } from "../domain/reservation.ts";

/** Writes InventoryReserved to the outbox, in the caller's transaction. Aggregate: the order. */
export function inventoryReserved(tx: Tx, orderId: string): void {
  tx.publish(InventoryReservedSchema, orderId, { orderId });
}

/** Writes InventoryReservationFailed to the outbox, in the caller's transaction. */
export function reservationFailed(tx: Tx, orderId: string, reason: RefusalReason): void {
  tx.publish(InventoryReservationFailedSchema, orderId, { orderId, reason });
}

/** Writes InventoryReleased to the outbox, in the caller's transaction. */
export function inventoryReleased(tx: Tx, orderId: string): void {
  tx.publish(InventoryReleasedSchema, orderId, { orderId });
}
