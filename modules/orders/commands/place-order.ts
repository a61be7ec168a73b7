import { createHash } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CatalogService } from "../../../gen/catalog/v1/catalog_pb.ts";
import type { CustomerService } from "../../../gen/customers/v1/customers_pb.ts";
import { newId } from "../../../platform/ids.ts";
import type { ModuleStorage } from "../../../platform/module.ts";
import { domainError, invalidArgument, type FieldViolation } from "../../../platform/rpc/errors.ts";
import { newOrder, priceLines, requestFingerprint, type Order } from "../domain/order.ts";
import { startSaga, type SagaTimings } from "../domain/saga.ts";
import { sagaStore } from "../db/saga-store.ts";
import { idempotencyStore, orderStore } from "../db/store.ts";
import { orderCreated } from "../events/publish.ts";
import type { PlacedOrders } from "../db/placed-orders.ts";
import type { SagaBacklog } from "./admission.ts";
import type { PlaceOrderInput } from "./inputs.ts";

/** What PlaceOrder needs: the module's storage, the clients of the services it prices with, the saga's timings, admission control. */
export interface PlaceOrderDeps {
  readonly storage: ModuleStorage;
  readonly catalog: Client<typeof CatalogService>;
  readonly customers: Client<typeof CustomerService>;
  readonly timings: SagaTimings;
  /** Refuses new orders while too many sagas are in flight (absent: no limit). */
  readonly backlog?: SagaBacklog;
  /** Told every placed order after its commit, for the saga's steps. */
  readonly orders?: PlacedOrders;
}

/** The placed order; `replayed` when an earlier request with the same idempotency key placed it. */
export interface PlaceOrderResult {
  readonly order: Order;
  readonly replayed: boolean;
}

/**
 * Places an order: looks the customer and the products up (every await happens here, before the
 * transaction), prices the lines, then in one transaction inserts the PENDING order and its saga
 * (awaiting payment, with its deadline), records the idempotency key and writes OrderCreated —
 * which starts the saga — to the outbox.
 *
 * With an idempotency key, the same key and request return the first order (`replayed`), and the
 * same key with another request fails with AlreadyExists (`idempotency-key-reused`). The key is
 * checked once cheaply up front (a replay needs neither catalog nor customers); the key's primary
 * key decides between two concurrent requests: the loser's transaction rolls back, and it answers
 * with the winner's order.
 */
export async function placeOrder(deps: PlaceOrderDeps, input: PlaceOrderInput, idempotencyKey?: string): Promise<PlaceOrderResult> {
  const key = idempotencyKey === undefined ? undefined : { key: idempotencyKey, requestHash: requestHash(input) };
  const early = key && (await replay(deps.storage, key.key, key.requestHash));
  if (early) return early;
  // A replay still answers under overload; a new order waits for the backlog to drain.
  deps.backlog?.admit();

  const prices = await lookUp(deps, input);
  const pricing = priceLines(input.lines, prices);
  if (pricing.kind === "unknown-products") {
    const violations = pricing.lineIndexes.map((i) => ({ field: `lines[${i}].productId`, description: `product ${input.lines[i]!.productId} does not exist` }));
    throw badReference("product-not-found", violations, { productIds: pricing.lineIndexes.map((i) => input.lines[i]!.productId).join(",") });
  }
  if (pricing.kind === "total-too-large") {
    throw badReference("order-total-too-large", [{ field: "lines", description: "the order total exceeds 2^53 cents" }]);
  }
  const now = Date.now();
  const order = newOrder({ id: newId(), customerId: input.customerId, lines: pricing.lines, totalCents: pricing.totalCents, now });

  try {
    const placed = await deps.storage.transact((tx) => {
      orderStore.insert(tx, order);
      sagaStore.insert(tx, startSaga(order.id, now, deps.timings), now, "order-placed");
      if (key) idempotencyStore.insert(tx, { ...key, orderId: order.id, createdAt: now }, { ifDuplicate: () => new KeyTaken() });
      orderCreated(tx, order);
      return { order, replayed: false };
    });
    deps.backlog?.placed();
    deps.orders?.remember(order);
    return placed;
  } catch (err) {
    if (!(err instanceof KeyTaken)) throw err;
    // A concurrent request with the same key committed first (its row is visible now).
    const earlier = await replay(deps.storage, key!.key, key!.requestHash);
    if (!earlier) throw new Error(`idempotency key ${key!.key} was taken but is not readable`);
    return earlier;
  }
}

/** The idempotency key was recorded by a concurrent request between the early check and the commit. */
class KeyTaken extends Error {}

/** A stable hash of the normalised request, stored with the idempotency key. */
function requestHash(input: PlaceOrderInput): string {
  return createHash("sha256").update(requestFingerprint(input)).digest("hex");
}

/** The order an earlier request with `key` placed, if any; AlreadyExists if that request differed. */
async function replay(storage: ModuleStorage, key: string, hash: string): Promise<PlaceOrderResult | undefined> {
  const earlier = await idempotencyStore.byKey(storage, key);
  if (!earlier) return undefined;
  if (earlier.requestHash !== hash) {
    throw domainError(Code.AlreadyExists, "idempotency-key-reused", "this idempotency key was already used with a different request", "orders");
  }
  const order = await orderStore.byId(storage, earlier.orderId);
  // The foreign key makes this impossible; fail loudly rather than place a second order.
  if (!order) throw new Error(`idempotency key points at missing order ${earlier.orderId}`);
  return { order, replayed: true };
}

/** Checks the customer and fetches the unit prices (product id -> cents), both calls in parallel. */
async function lookUp(deps: PlaceOrderDeps, input: PlaceOrderInput): Promise<Map<string, number>> {
  const [customer, catalog] = await Promise.all([
    deps.customers.getCustomer({ id: input.customerId }).catch((err: unknown) => {
      const e = ConnectError.from(err);
      // InvalidArgument too: an id the customers module rejects cannot name a customer.
      if (e.code === Code.NotFound || e.code === Code.InvalidArgument) return { customer: undefined };
      throw e;
    }),
    deps.catalog.getProducts({ ids: input.lines.map((l) => l.productId) }),
  ]);
  if (!customer.customer) {
    throw badReference("customer-not-found", [{ field: "customerId", description: `customer ${input.customerId} does not exist` }], { customerId: input.customerId });
  }
  return new Map(catalog.products.map((p) => [p.id, Number(p.priceCents)]));
}

/** InvalidArgument with a reason: the request is well-formed but refers to something that does not exist. */
function badReference(reason: string, violations: readonly FieldViolation[], metadata: Record<string, string> = {}): ConnectError {
  return invalidArgument(violations, { reason, domain: "orders", metadata });
}
