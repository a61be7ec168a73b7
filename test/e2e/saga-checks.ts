/**
 * Saga checks shared by the e2e suites: Connect clients for the invariant checker
 * (ops/invariants.ts) aimed at whichever process hosts each module, and assertions that the
 * invariants hold and that every saga is done.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { expect } from "vitest";
import { InventoryService } from "../../gen/inventory/v1/inventory_pb.ts";
import { OrderService, SagaState } from "../../gen/orders/v1/orders_pb.ts";
import { PaymentService } from "../../gen/payments/v1/payments_pb.ts";
import { checkInvariants, formatReport, type InvariantClients, type InvariantReport } from "../../ops/invariants.ts";

/** An order as `GET /api/v1/orders/{id}` returns it, with its saga. */
export interface OrderJson {
  id: string;
  customerId: string;
  status: string;
  reason?: string;
  totalCents: number;
  createdAt: string;
  lines: Array<{ productId: string; quantity: number }>;
  saga: SagaJson;
}

/** An order's saga as the REST API shows it. */
export interface SagaJson {
  state: string;
  reason?: string;
  deadline?: string;
  compensationAttempts: number;
  history: Array<{ at: string; state: string; note: string }>;
}

/** The notes of an order's saga history, oldest first. */
export const notes = (o: OrderJson) => o.saga.history.map((h) => h.note);

/**
 * Clients of orders, payments and inventory over Connect, each at the base URL `urlOf(module)`
 * returns (call again after a restart that changed a port).
 * @example const c = sagaClients((m) => topo.serverOf(m).url);
 */
export function sagaClients(urlOf: (module: string) => string): InvariantClients {
  const transport = (module: string) => createConnectTransport({ baseUrl: urlOf(module) });
  return {
    orders: createClient(OrderService, transport("orders")),
    payments: createClient(PaymentService, transport("payments")),
    inventory: createClient(InventoryService, transport("inventory")),
  };
}

/**
 * Runs the invariant checker (waiting up to `settleMs` for sagas in flight) and fails with its
 * report unless every invariant holds and every saga ended CONFIRMED or CANCELLED (none in flight,
 * none STUCK). Returns the report and the number of sagas per final state.
 */
export async function expectSagasDoneAndInvariantsHold(clients: InvariantClients, settleMs = 30_000): Promise<{ report: InvariantReport; confirmed: number; cancelled: number }> {
  const report = await checkInvariants(clients, { settleMs, pollMs: 50 });
  expect(report.ok, formatReport(report).join("\n")).toBe(true);
  const summary = await clients.orders.getSagaSummary({});
  const count = (s: SagaState) => Number(summary.states.find((x) => x.state === s)?.count ?? 0n);
  const notDone = summary.states.filter((s) => s.state !== SagaState.CONFIRMED && s.state !== SagaState.CANCELLED && s.count > 0n);
  expect(notDone.map((s) => `${SagaState[s.state]}: ${s.count}`), "sagas not CONFIRMED or CANCELLED").toEqual([]);
  return { report, confirmed: count(SagaState.CONFIRMED), cancelled: count(SagaState.CANCELLED) };
}
