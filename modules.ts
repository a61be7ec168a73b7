/**
 * The modules this binary knows, in start order. `main.ts` imports only their manifests.
 */
import analytics from "./modules/analytics/index.ts";
import catalog from "./modules/catalog/index.ts";
import customers from "./modules/customers/index.ts";
import inventory from "./modules/inventory/index.ts";
import notifications from "./modules/notifications/index.ts";
import orderHistory from "./modules/order-history/index.ts";
import orders from "./modules/orders/index.ts";
import payments from "./modules/payments/index.ts";
import type { ModuleManifest } from "./platform/module.ts";

export const allModules: readonly ModuleManifest<any>[] = [catalog, customers, orders, payments, inventory, orderHistory, notifications, analytics];
