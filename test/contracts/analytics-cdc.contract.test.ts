import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AnalyticsService } from "../../gen/analytics/v1/analytics_pb.ts";
import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { CustomerService } from "../../gen/customers/v1/customers_pb.ts";
import { InventoryService } from "../../gen/inventory/v1/inventory_pb.ts";
import { OrderService, OrderStatus } from "../../gen/orders/v1/orders_pb.ts";
import analytics from "../../modules/analytics/index.ts";
import catalog from "../../modules/catalog/index.ts";
import customers from "../../modules/customers/index.ts";
import inventory from "../../modules/inventory/index.ts";
import orders from "../../modules/orders/index.ts";
import payments from "../../modules/payments/index.ts";
import { utcDay } from "../../modules/analytics/domain/sales.ts";
import { bootModules, TEST_TOPOLOGY, waitFor } from "../support/platform.ts";

// analytics with the real change data capture of catalog's products table — SQLite triggers on
// the embedded project, a logical replication slot on the postgres project — and the real order
// saga. Lives outside modules/ because it boots several modules.

describe(`analytics from change data capture (${TEST_TOPOLOGY})`, () => {
  let t: Awaited<ReturnType<typeof bootModules>>;
  let products: ReturnType<typeof t.platform.client<typeof CatalogService>>;
  let sales: ReturnType<typeof t.platform.client<typeof AnalyticsService>>;
  beforeAll(async () => {
    t = await bootModules([catalog, customers, orders, payments, inventory, analytics]);
    products = t.platform.client(CatalogService);
    sales = t.platform.client(AnalyticsService);
  });
  afterAll(() => t.dispose());

  const captured = (id: string, what: (p: { productName: string; priceCents: bigint }) => boolean) =>
    waitFor(async () => {
      const s = await sales.getProductSales({ productId: id, fromDay: "2025-01-01", toDay: "2025-01-01" });
      return what(s) && s;
    }, { what: `product ${id} captured` });

  it("gets names and prices from the catalog's table without the catalog publishing anything for it", async () => {
    const id = (await products.createProduct({ sku: "CDC-KOPI", name: "Kopi", priceCents: 2500n })).product!.id;
    expect(await captured(id, (p) => p.productName === "Kopi")).toMatchObject({ productName: "Kopi", priceCents: 2500n });

    await products.updateProduct({ id, name: "Kopi Luwak" });
    await products.updateProduct({ id, priceCents: 4000n });
    expect(await captured(id, (p) => p.priceCents === 4000n)).toMatchObject({ productName: "Kopi Luwak", priceCents: 4000n });
  });

  it("counts an order the saga confirms, per product, on today's UTC day", async () => {
    const kopi = (await products.createProduct({ sku: "CDC-SALE-1", name: "Kopi Tubruk", priceCents: 2500n })).product!.id;
    const teh = (await products.createProduct({ sku: "CDC-SALE-2", name: "Teh Tarik", priceCents: 1200n })).product!.id;
    for (const productId of [kopi, teh]) await t.platform.client(InventoryService).restock({ productId, quantity: 10n });
    const customerId = (await t.platform.client(CustomerService).createCustomer({ email: "cdc@example.com", name: "Sari", creditLimitCents: 1_000_000n })).customer!.id;
    const before = utcDay(Date.now());
    const order = (await t.platform.client(OrderService).placeOrder({ customerId, lines: [{ productId: kopi, quantity: 2 }, { productId: teh, quantity: 1 }] })).order!;
    await waitFor(async () => (await t.platform.client(OrderService).getOrder({ id: order.id })).order?.status === OrderStatus.CONFIRMED, { what: "the saga to confirm" });

    // The confirmation's day: today, unless the test straddled midnight UTC.
    const got = await waitFor(async () => {
      for (const day of new Set([before, utcDay(Date.now())])) {
        const list = (await sales.listDailySales({ day })).products.filter((p) => p.productId === kopi || p.productId === teh);
        if (list.length === 2 && list.every((p) => p.productName)) return list;
      }
      return undefined;
    }, { what: "the sale in analytics" });
    expect(got.map((p) => [p.productName, Number(p.unitsSold), Number(p.revenueCents), Number(p.orders)])).toEqual([
      ["Kopi Tubruk", 2, 5000, 1],
      ["Teh Tarik", 1, 1200, 1],
    ]);
  });
});
