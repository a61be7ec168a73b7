/**
 * The NATS JetStream implementation of `Bus` (ADR 0006).
 * @example const bus = await openNatsBus({ servers: ["nats://127.0.0.1:4222"], prefix: "selaras", ... });
 */
export { NatsBus, openNatsBus, type NatsBusOptions } from "./bus.ts";
export { PREFIX_PATTERN } from "./names.ts";
