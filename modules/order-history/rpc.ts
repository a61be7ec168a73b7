import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { OrderHistoryService, OrderSummarySchema, type OrderSummary } from "../../gen/order_history/v1/order_history_pb.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import type { HistoryOrder } from "./domain/order-history.ts";
import { ListCustomerOrdersInput } from "./queries/inputs.ts";
import { listCustomerOrders } from "./queries/list-customer-orders.ts";

/** Domain history order -> proto. */
export function toProto(o: HistoryOrder): OrderSummary {
  return create(OrderSummarySchema, {
    orderId: o.id,
    customerId: o.customerId,
    customerName: o.customerName,
    status: o.status,
    totalCents: BigInt(o.totalCents),
    lines: o.lines.map((l) => ({ productId: l.productId, productName: l.productName, quantity: l.quantity, unitPriceCents: BigInt(l.unitPriceCents) })),
    createdAt: timestampFromMs(o.createdAt),
  });
}

/** The Connect implementation of order_history.v1.OrderHistoryService. */
export function orderHistoryRpc(storage: ModuleStorage): ServiceImpl<typeof OrderHistoryService> {
  return {
    async listCustomerOrders(req) {
      const { customerId } = parseOrThrow(ListCustomerOrdersInput, { customerId: req.customerId });
      return { orders: (await listCustomerOrders(storage, customerId)).map(toProto) };
    },
  };
}
