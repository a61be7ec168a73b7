import type { EventEnvelope } from "../../platform/bus/types.ts";
import type { Platform } from "../../platform/platform.ts";
import { newId } from "../../platform/ids.ts";
import { waitFor } from "./platform.ts";

/**
 * Subscribes a throw-away consumer to the platform's bus and records every event of `types`
 * published by `source`, in bus order — how a contract test asserts what a module published.
 */
export function collectEvents(platform: Platform, source: string, types: readonly string[]) {
  const seen: EventEnvelope[] = [];
  const sub = platform.bus.subscribe({
    consumer: `test.${newId()}`,
    types,
    async handle(batch) {
      for (const d of batch) if (d.envelope.source === source) seen.push(d.envelope);
      return batch.map(() => ({ ok: true as const }));
    },
  });
  return {
    events: seen,
    /** Waits until at least `n` events arrived; returns them all. */
    waitForCount: (n: number, timeoutMs = 10_000) => waitFor(() => (seen.length >= n ? [...seen] : undefined), { timeoutMs, what: `${n} events from ${source}` }),
    stop: () => sub.stop(),
  };
}
