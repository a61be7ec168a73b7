import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { CustomerRegisteredSchema } from "../../gen/customers/v1/events_pb.ts";
import { migrations } from "../../gen/migrations/customers.ts";
import { defineModule, service } from "../../platform/module.ts";
import { customersRoutes } from "./rest.ts";
import { customersRpc } from "./rpc.ts";

/**
 * customers — customer profiles and their credit limits.
 * Serves `customers.v1.CustomerService` (other modules look customers up through
 * `GetCustomer`) and the `/api/v1/customers` routes; publishes CustomerRegistered.
 * Emails are unique regardless of letter case.
 */
export default defineModule({
  name: "customers",
  migrations,
  services: [CustomerService],
  publishes: [CustomerRegisteredSchema],
  start: ({ storage }) => ({
    services: [service(CustomerService, customersRpc(storage))],
    routes: customersRoutes(storage),
  }),
});
