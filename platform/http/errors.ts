import { Code, ConnectError } from "@connectrpc/connect";
import type { Context } from "hono";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { errorReason, fieldViolations } from "../rpc/errors.ts";

/**
 * The one mapping from Connect codes to HTTP statuses, for every REST route (STYLE.md: never a
 * different mapping per endpoint).
 */
export function httpStatus(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
      return 409;
    case Code.ResourceExhausted:
      return 429;
    case Code.Canceled:
      return 499;
    case Code.Unimplemented:
      return 501;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

/** Connect's wire name of a code, e.g. `invalid_argument`. */
export function codeName(code: Code): string {
  return Code[code]!.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/**
 * The REST error body: Connect's error JSON (`{code, message, details}`), with details spelled out
 * for humans: `reason` for domain errors and `fieldViolations` for bad input.
 */
export function errorBody(err: ConnectError): { code: string; message: string; details: unknown[] } {
  const details: unknown[] = [];
  const reason = errorReason(err);
  if (reason) details.push({ type: "selaras.v1.ErrorInfo", debug: { reason } });
  const violations = fieldViolations(err);
  if (violations.length > 0) details.push({ type: "selaras.v1.BadRequest", debug: { fieldViolations: violations } });
  return { code: codeName(err.code), message: err.rawMessage, details };
}

/**
 * Writes `err` as the REST error response; a `retryAfterSeconds` in its ErrorInfo metadata (an
 * overloaded service) becomes the `Retry-After` header.
 */
export function errorResponse(c: Context, err: ConnectError): Response {
  const retryAfter = err.findDetails(ErrorInfoSchema)[0]?.metadata.retryAfterSeconds;
  if (retryAfter && /^[0-9]+$/.test(retryAfter)) c.header("Retry-After", retryAfter);
  return c.json(errorBody(err), httpStatus(err.code) as 400);
}
