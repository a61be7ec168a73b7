/**
 * `bun bench/one-hop-server.ts [main.ts flags]`: the binary with only the modules of one hop —
 * HTTP → order + outbox → relay → consumer with inbox → read model (PRODUCT.md, "Quality bars";
 * issue 3's bar). Orders prices and checks through catalog and customers as always; payments,
 * inventory, notifications and analytics are not there, so nothing but the order-history
 * projection consumes the order, and every saga waits for a payment that never comes (the bench
 * sets `modules.orders.saga.paymentTimeoutMs` past the run and `maxInFlight` to 0).
 */
import { main } from "../main.ts";
import { allModules } from "../modules.ts";
import { ONE_HOP_MODULES } from "./one-hop.ts";

process.exitCode = await main(allModules.filter((m) => ONE_HOP_MODULES.includes(m.name)));
