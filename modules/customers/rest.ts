import type { Hono } from "hono";
import { jsonBody, pathParam } from "../../platform/http/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { CustomerId, RegisterCustomerInput } from "./commands/inputs.ts";
import { registerCustomer } from "./commands/register-customer.ts";
import type { Customer } from "./domain/customer.ts";
import { getCustomer } from "./queries/get-customer.ts";

/** The public JSON shape of a customer. */
function toJson(c: Customer) {
  return {
    id: c.id,
    email: c.email,
    name: c.name,
    creditLimitCents: c.creditLimitCents,
    createdAt: new Date(c.createdAt).toISOString(),
  };
}

/**
 * `POST /api/v1/customers`, `GET /api/v1/customers/{id}`. The `:id` param matches one path
 * segment only, so `GET /api/v1/customers/{id}/orders` stays free for order-history.
 */
export function customersRoutes(storage: ModuleStorage) {
  return (app: Hono) => {
    app.post("/api/v1/customers", async (c) => c.json(toJson(await registerCustomer(storage, await jsonBody(c, RegisterCustomerInput))), 201));
    app.get("/api/v1/customers/:id", async (c) => c.json(toJson(await getCustomer(storage, pathParam(c, "id", CustomerId)))));
  };
}
