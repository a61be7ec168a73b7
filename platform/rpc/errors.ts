import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../observability/logger.ts";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";

/** One violated field of a request: its path (`lines[0].quantity`) and what is wrong. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/**
 * A domain error: a Connect code plus a kebab-case reason (`insufficient-credit`), the one error
 * vocabulary of every module, over REST, RPC and events alike.
 * @example throw domainError(Code.NotFound, "product-not-found", `product ${id} does not exist`, "catalog")
 */
export function domainError(code: Code, reason: string, message: string, domain: string, metadata: Record<string, string> = {}): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: { reason, domain, metadata } }]);
}

/**
 * An InvalidArgument error that names every bad field; with `info`, it also carries a domain
 * reason (for programs) — e.g. a well-formed request that refers to something that does not exist.
 * @example throw invalidArgument([{ field: "priceCents", description: "must be a non-negative integer" }])
 * @example throw invalidArgument([{ field: "customerId", description: "does not exist" }], { reason: "customer-not-found", domain: "orders" })
 */
export function invalidArgument(
  violations: readonly FieldViolation[],
  info?: { reason: string; domain: string; metadata?: Record<string, string> },
): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  const details: ConstructorParameters<typeof ConnectError>[3] = [];
  if (info) details.push({ desc: ErrorInfoSchema, value: { reason: info.reason, domain: info.domain, metadata: info.metadata ?? {} } });
  details.push({ desc: BadRequestSchema, value: { fieldViolations: violations.map((v) => ({ ...v })) } });
  return new ConnectError(message, Code.InvalidArgument, undefined, details);
}

/** The kebab-case reason of a domain error, if it carries one. */
export function errorReason(err: ConnectError): string | undefined {
  return err.findDetails(ErrorInfoSchema)[0]?.reason;
}

/** The field violations of an InvalidArgument error, if any. */
export function fieldViolations(err: ConnectError): FieldViolation[] {
  return err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
}

/**
 * Turns anything thrown into a ConnectError safe to show a client: ConnectErrors pass through;
 * anything else becomes `Internal` with a generic message, the real error kept as `cause`
 * (for the log only — it is never serialised).
 */
export function toPublicError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/**
 * Server interceptor of every RPC endpoint (Connect on the HTTP port, native gRPC): anything but a
 * ConnectError reaches the client as `Internal` with a generic message, and its cause goes to the
 * log (with the trace id the logger adds).
 * @example createConnectRouter({ interceptors: [publicErrors(logger, "connect")] })
 */
export function publicErrors(logger: Logger, protocol: string): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (!(err instanceof ConnectError)) logger.error("rpc failed", { protocol, procedure: `${req.service.typeName}/${req.method.name}`, err });
      throw toPublicError(err);
    }
  };
}
