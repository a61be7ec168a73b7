import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { InventoryService } from "../gen/inventory/v1/inventory_pb.ts";
import { OrderService } from "../gen/orders/v1/orders_pb.ts";
import { PaymentService } from "../gen/payments/v1/payments_pb.ts";
import type { PlatformConfig } from "../platform/config/schema.ts";
import { checkInvariants, formatReport } from "./invariants.ts";

export const CHECK_INVARIANTS_USAGE = `Usage:
  bun run main.ts check-invariants [URL]   check the saga's invariants through the modules' APIs
With a topology (--config FILE) each module is reached at its process's url; without one at URL
(default http://127.0.0.1:<port>). Waits up to 30 s for sagas in flight to finish. Exit 0 when
every invariant holds, 1 when one is violated, 2 on bad usage.`;

/** `check-invariants`: runs `checkInvariants` against a running system over Connect. Returns the exit code. */
export async function checkInvariantsCommand(args: readonly string[], config: PlatformConfig, io: { out(l: string): void; err(l: string): void }): Promise<number> {
  if (args.length > 1) {
    io.err(CHECK_INVARIANTS_USAGE);
    return 2;
  }
  const processes = Object.values(config.topology.processes);
  const urlOf = (module: string): string | undefined => {
    if (processes.length === 0) return args[0] ?? `http://127.0.0.1:${config.port}`;
    return processes.find((p) => p.modules.includes(module))?.url;
  };
  const transports = new Map<string, Transport>();
  const transport = (module: string): Transport => {
    const url = urlOf(module);
    if (!url) throw new Error(`no url for the process hosting ${module} in topology.processes`);
    let t = transports.get(url);
    if (!t) transports.set(url, (t = createConnectTransport({ baseUrl: url, useBinaryFormat: true })));
    return t;
  };
  const report = await checkInvariants(
    { orders: createClient(OrderService, transport("orders")), payments: createClient(PaymentService, transport("payments")), inventory: createClient(InventoryService, transport("inventory")) },
    { settleMs: 30_000 },
  );
  for (const line of formatReport(report)) io.out(line);
  return report.ok ? 0 : 1;
}
