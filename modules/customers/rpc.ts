import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { CustomerSchema, CustomerService, type Customer as CustomerMsg } from "../../gen/customers/v1/customers_pb.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { CustomerId, RegisterCustomerInput } from "./commands/inputs.ts";
import { registerCustomer } from "./commands/register-customer.ts";
import type { Customer } from "./domain/customer.ts";
import { getCustomer } from "./queries/get-customer.ts";

/** Domain customer -> proto. */
export function toProto(c: Customer): CustomerMsg {
  return create(CustomerSchema, {
    id: c.id,
    email: c.email,
    name: c.name,
    creditLimitCents: BigInt(c.creditLimitCents),
    createdAt: timestampFromMs(c.createdAt),
  });
}

/** bigint from the wire -> number, or undefined so validation names the field. */
function cents(v: bigint | undefined): number | undefined {
  return v === undefined ? undefined : Number(v);
}

/** The Connect implementation of customers.v1.CustomerService: proto in, command/query, proto out. */
export function customersRpc(storage: ModuleStorage): ServiceImpl<typeof CustomerService> {
  return {
    async createCustomer(req) {
      const input = parseOrThrow(RegisterCustomerInput, { email: req.email, name: req.name, creditLimitCents: cents(req.creditLimitCents) });
      return { customer: toProto(await registerCustomer(storage, input)) };
    },
    async getCustomer(req) {
      return { customer: toProto(await getCustomer(storage, parseOrThrow(CustomerId, req.id))) };
    },
  };
}
