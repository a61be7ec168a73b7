import { Code } from "@connectrpc/connect";
import type { ModuleStorage, Tx } from "../../../platform/module.ts";
import { domainError } from "../../../platform/rpc/errors.ts";
import { WriteConflict } from "../../../platform/storage/statements.ts";
import { decide, type Saga, type SagaInput, type SagaTimings, type Transition } from "../domain/saga.ts";
import type { PlacedOrder, PlacedOrders } from "../db/placed-orders.ts";
import { sagaStore } from "../db/saga-store.ts";
import { orderStore } from "../db/store.ts";
import { sagaCommands } from "../events/publish.ts";

/** What moving a saga needs. */
export interface SagaDeps {
  readonly storage: ModuleStorage;
  readonly timings: SagaTimings;
  /** Recent orders as placed (absent: read each time). */
  readonly orders?: PlacedOrders;
}

/** A saga with its order as placed (the commands need the lines, the customer and the total). */
export interface LoadedSaga {
  readonly saga: Saga;
  readonly order: PlacedOrder;
}

/** Reads a saga and its order; undefined if the order does not exist. */
export async function loadSaga(deps: Pick<SagaDeps, "storage" | "orders">, orderId: string): Promise<LoadedSaga | undefined> {
  const [saga, order] = await Promise.all([sagaStore.byOrder(deps.storage, orderId), deps.orders ? deps.orders.get(deps.storage, orderId) : orderStore.byId(deps.storage, orderId)]);
  return saga && order ? { saga, order } : undefined;
}

/**
 * Writes one transition in the caller's transaction: the saga row (only over the version it was
 * decided from: WriteConflict otherwise), its history entry, the order's final status when the
 * saga ends, and the commands and announcements the transition sends — all or nothing.
 */
export function applyTransition(tx: Tx, loaded: LoadedSaga, tr: Transition, now: number): void {
  sagaStore.transition(tx, loaded.saga, tr.next, now, tr.note);
  if (tr.next.state === "CONFIRMED") orderStore.setStatus(tx, loaded.order.id, "CONFIRMED", "", now);
  if (tr.next.state === "CANCELLED") orderStore.setStatus(tx, loaded.order.id, "CANCELLED", tr.next.reason, now);
  sagaCommands(tx, loaded.order, tr.commands);
}

/**
 * Moves the sagas whose deadline has come (a step timed out, a compensation was not
 * acknowledged): at most `limit` per call, in parallel (their transactions share commits). A saga
 * that an event moved meanwhile is skipped — the next sweep sees its new deadline. Several
 * processes may sweep at once: each transition applies once.
 * @returns how many sagas moved.
 */
export async function sweepSagas(deps: SagaDeps, now: number, limit = 256): Promise<number> {
  const due = await sagaStore.due(deps.storage, now, limit);
  const moved = await Promise.all(
    due.map(async ({ orderId }) => {
      const loaded = await loadSaga(deps, orderId);
      const tr = loaded && decide(loaded.saga, { kind: "timeout" }, now, deps.timings);
      if (!tr) return 0;
      try {
        await deps.storage.transact((tx) => applyTransition(tx, loaded, tr, now));
        return 1;
      } catch (err) {
        if (err instanceof WriteConflict) return 0;
        throw err;
      }
    }),
  );
  return moved.reduce((a: number, b) => a + b, 0);
}

/**
 * An operator's resume of a STUCK saga: its pending compensations are requested again with fresh
 * attempts. FailedPrecondition (`saga-not-stuck`) unless it is STUCK, NotFound (`order-not-found`).
 */
export async function resumeSaga(deps: SagaDeps, orderId: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const loaded = await loadSaga(deps, orderId);
    if (!loaded) throw domainError(Code.NotFound, "order-not-found", `order ${orderId} does not exist`, "orders", { orderId });
    const now = Date.now();
    const tr = loaded.saga.state === "STUCK" ? decide(loaded.saga, { kind: "resume" }, now, deps.timings) : undefined;
    if (!tr) throw domainError(Code.FailedPrecondition, "saga-not-stuck", `the saga of order ${orderId} is ${loaded.saga.state}, not STUCK`, "orders", { orderId, state: loaded.saga.state });
    try {
      await deps.storage.transact((tx) => applyTransition(tx, loaded, tr, now));
      return;
    } catch (err) {
      if (!(err instanceof WriteConflict) || attempt >= 5) throw err;
    }
  }
}

/** The saga input an event stands for. */
export type { SagaInput };
