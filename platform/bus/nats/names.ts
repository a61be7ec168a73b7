// Subjects, streams and consumer names of the NATS bus (pure; see ADR 0006).
//
//   event        <prefix>.events.<package>.<Message>.<partition>   e.g. selaras.events.orders.v1.OrderCreated.0
//   stream       <PREFIX>_<PACKAGE>[_P<partition>]                 e.g. SELARAS_ORDERS_V1 (partition 0), SELARAS_ORDERS_V1_P1
//                with subjects <prefix>.events.<package>.*.<partition>
//   consumer     <module>_<subscription> in each stream it reads
//   dead letter  <prefix>.dlq.<consumer>      in <PREFIX>_DLQ
//   redrive      <prefix>.redrive.<consumer>  in <PREFIX>_REDRIVE

/** Lower-case letters, digits, `_` and `-`: one subject token, and upper-cased a valid stream-name part. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9_-]*$/;

/** A version token of a proto package: v1, v2, v1beta1, v2alpha3. */
const VERSION = /^v\d+([a-z]+\d*)?$/;

/** Where an event type's package ends and its message name begins. */
export interface TypeParts {
  /** Proto package, e.g. `orders.v1`. */
  readonly pkg: string;
  /** Message name as one subject token; a nested message's dots become `_`. */
  readonly name: string;
}

/**
 * Splits a fully-qualified protobuf type. The package ends at its last version token
 * (`orders.v1.Order.Line` → `orders.v1` + `Order_Line`); without one, at the last dot.
 */
export function splitType(type: string): TypeParts {
  const tokens = type.split(".");
  if (tokens.length < 2 || tokens.some((t) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(t))) {
    throw new Error(`event type "${type}" is not a fully-qualified protobuf name (package.Message)`);
  }
  let end = tokens.length - 1;
  for (let i = tokens.length - 2; i >= 0; i--) {
    if (VERSION.test(tokens[i]!)) {
      end = i + 1;
      break;
    }
  }
  return { pkg: tokens.slice(0, end).join("."), name: tokens.slice(end).join("_") };
}

/** The subject an event is published on. */
export function eventSubject(prefix: string, type: string, partition: number): string {
  const { pkg, name } = splitType(type);
  return `${prefix}.events.${pkg}.${name}.${partition}`;
}

const SYSTEM_STREAMS = new Set(["DLQ", "REDRIVE"]);

/**
 * The stream holding one partition of a proto package's events. Partition 0 carries the plain
 * name, so a deployment with one partition has exactly one stream per package.
 */
export function eventStream(prefix: string, pkg: string, partition: number): string {
  const part = pkg.toUpperCase().replace(/[^A-Z0-9_-]/g, "_");
  if (SYSTEM_STREAMS.has(part)) throw new Error(`proto package "${pkg}" clashes with the bus's own ${part} stream`);
  return `${prefix.toUpperCase()}_${part}${partition === 0 ? "" : `_P${partition}`}`;
}

/** The subjects of one partition stream of a package: every message type, that partition. */
export function eventStreamSubjects(prefix: string, pkg: string, partition: number): string {
  return `${prefix}.events.${pkg}.*.${partition}`;
}

/** `<module>.<subscription>` made a valid durable name and subject token (`.` and the like become `_`). */
export function consumerToken(consumer: string): string {
  if (consumer.length === 0) throw new Error("consumer name is empty");
  return consumer.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** The KV bucket of partition leases (its stream is `KV_<bucket>`). */
export const leaseBucket = (prefix: string) => `${prefix.toUpperCase()}_LEASES`;

/** The dead-letter stream and a consumer's subject in it. */
export const dlqStream = (prefix: string) => `${prefix.toUpperCase()}_DLQ`;
export const dlqSubject = (prefix: string, consumer: string) => `${prefix}.dlq.${consumerToken(consumer)}`;

/** The redrive stream and a consumer's subject in it (its subscription consumes that subject too). */
export const redriveStream = (prefix: string) => `${prefix.toUpperCase()}_REDRIVE`;
export const redriveSubject = (prefix: string, consumer: string) => `${prefix}.redrive.${consumerToken(consumer)}`;

const utf8 = new TextEncoder();

/**
 * The partition of an aggregate: FNV-1a (32 bit) of its id's UTF-8 bytes, modulo `partitions`.
 * Stable across processes and languages, so every publisher puts an aggregate's events on the
 * same partition — which is what keeps them in order.
 */
export function partitionOf(aggregateId: string, partitions: number): number {
  if (partitions <= 1) return 0;
  let h = 0x811c9dc5;
  for (const b of utf8.encode(aggregateId)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}
