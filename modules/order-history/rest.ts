import type { Hono } from "hono";
import { parseOrThrow } from "../../platform/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import type { HistoryOrder } from "./domain/order-history.ts";
import { ListCustomerOrdersInput } from "./queries/inputs.ts";
import { listCustomerOrders } from "./queries/list-customer-orders.ts";

/** The public JSON shape of an order in a customer's history (money as JSON numbers). */
function toJson(o: HistoryOrder) {
  return {
    id: o.id,
    status: o.status,
    totalCents: o.totalCents,
    customerName: o.customerName,
    createdAt: new Date(o.createdAt).toISOString(),
    lines: o.lines.map((l) => ({ productId: l.productId, productName: l.productName, quantity: l.quantity, unitPriceCents: l.unitPriceCents })),
  };
}

/** `GET /api/v1/customers/{id}/orders`: the customer's orders, newest first; unknown customer -> `orders: []`. */
export function orderHistoryRoutes(storage: ModuleStorage) {
  return (app: Hono) => {
    app.get("/api/v1/customers/:id/orders", async (c) => {
      const { customerId } = parseOrThrow(ListCustomerOrdersInput, { customerId: c.req.param("id") });
      return c.json({ customerId, orders: (await listCustomerOrders(storage, customerId)).map(toJson) });
    });
  };
}
