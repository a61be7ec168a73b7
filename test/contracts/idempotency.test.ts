import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { OrderHistoryService } from "../../gen/order_history/v1/order_history_pb.ts";
import { OrderService } from "../../gen/orders/v1/orders_pb.ts";

// Remote calls retry only methods whose proto declares them safe to repeat (ADR 0007), so a query
// that forgets `option idempotency_level = NO_SIDE_EFFECTS` silently loses its retries. The house
// naming rule (STYLE.md: queries are Get…/List…) makes the omission detectable.
const services: DescService[] = [CatalogService, CustomerService, OrderService, OrderHistoryService];

describe("proto contracts: idempotency levels", () => {
  it("every Get…/List… query declares NO_SIDE_EFFECTS, and no command does", () => {
    const wrong = services.flatMap((s) =>
      s.methods
        .filter((m) => /^(Get|List)[A-Z]/.test(m.name) !== (m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS))
        .map((m) => `${s.typeName}.${m.name}`),
    );
    expect(wrong).toEqual([]);
  });
});
