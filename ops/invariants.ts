/**
 * The saga's invariant checker: verifies, through the modules' own APIs, that the system is
 * consistent across module databases. Used at the end of the fault and crash tests, and by
 * operators against a running system: `bun run main.ts check-invariants`.
 *
 * 1. payments: captured payments equal the totals of CONFIRMED orders, and equal the credit used
 *    across accounts (limit − available);
 * 2. inventory: for every product, restocked = available + reserved;
 * 3. orders: every saga is done (CONFIRMED or CANCELLED) or within its deadline; none STUCK.
 *
 * Payments are captured before an order is confirmed, so (1) only holds while no saga is in
 * flight: the checker first waits (up to `settleMs`) for every saga to be done.
 */
import type { Client } from "@connectrpc/connect";
import type { InventoryService } from "../gen/inventory/v1/inventory_pb.ts";
import { SagaState, type OrderService } from "../gen/orders/v1/orders_pb.ts";
import type { PaymentService } from "../gen/payments/v1/payments_pb.ts";

/** The services the checker reads. */
export interface InvariantClients {
  readonly orders: Client<typeof OrderService>;
  readonly payments: Client<typeof PaymentService>;
  readonly inventory: Client<typeof InventoryService>;
}

export interface InvariantCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface InvariantReport {
  readonly ok: boolean;
  readonly checks: readonly InvariantCheck[];
}

const ACTIVE = [SagaState.AWAITING_PAYMENT, SagaState.AWAITING_STOCK, SagaState.COMPENSATING];

/** Runs every check; waits up to `settleMs` for sagas in flight to finish first (polling every `pollMs`). */
export async function checkInvariants(c: InvariantClients, opts: { settleMs?: number; pollMs?: number } = {}): Promise<InvariantReport> {
  const deadline = Date.now() + (opts.settleMs ?? 0);
  let summary = await c.orders.getSagaSummary({});
  const active = () => summary.states.filter((s) => ACTIVE.includes(s.state)).reduce((n, s) => n + s.count, 0n);
  while (active() > 0n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
    summary = await c.orders.getSagaSummary({});
  }
  const [totals, stock] = await Promise.all([c.payments.getTotals({}), c.inventory.listStock({})]);
  const count = (state: SagaState) => summary.states.find((s) => s.state === state)?.count ?? 0n;
  const checks: InvariantCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  const inFlight = active();
  check(
    "captured payments = totals of confirmed orders",
    inFlight === 0n && totals.capturedCents === summary.confirmedTotalCents,
    `captured ${totals.capturedCents} cents (${totals.capturedCount} payments), confirmed orders ${summary.confirmedTotalCents} cents` + (inFlight > 0n ? `; ${inFlight} sagas still in flight, so this cannot be judged` : ""),
  );
  check("credit used = captured payments", totals.creditUsedCents === totals.capturedCents, `credit used ${totals.creditUsedCents} cents, captured ${totals.capturedCents} cents`);
  const broken = stock.stocks.filter((s) => s.restocked !== s.available + s.reserved || s.available < 0n || s.reserved < 0n);
  check(
    "restocked = available + reserved, for every product",
    broken.length === 0,
    broken.length === 0
      ? `${stock.stocks.length} products`
      : broken
          .slice(0, 10)
          .map((s) => `${s.productId}: restocked ${s.restocked}, available ${s.available}, reserved ${s.reserved}`)
          .join("; "),
  );
  check(
    "every saga is done or within its deadline",
    summary.overdue === 0n && count(SagaState.STUCK) === 0n,
    `confirmed ${count(SagaState.CONFIRMED)}, cancelled ${count(SagaState.CANCELLED)}, in flight ${inFlight}, stuck ${count(SagaState.STUCK)}, overdue ${summary.overdue}` +
      (summary.overdueOrderIds.length > 0 ? ` (${summary.overdueOrderIds.join(", ")})` : ""),
  );
  return { ok: checks.every((x) => x.ok), checks };
}

/** One line per check, `ok` or `FAIL`. */
export function formatReport(r: InvariantReport): string[] {
  return [...r.checks.map((x) => `${x.ok ? "ok  " : "FAIL"}  ${x.name}: ${x.detail}`), r.ok ? "all invariants hold" : "INVARIANTS VIOLATED"];
}
