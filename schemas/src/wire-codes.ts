/**
 * The wire error codes as plain data, without TypeBox: the error registry (core/errors) needs only
 * these names, and every CLI command loads it, so it should not pay for the schema builder.
 * common.ts re-exports them beside the schemas.
 */
/** Wire error codes, in PROTOCOL.md order. Extend, never rename. */
export const WIRE_ERROR_CODES = [
  'invalid_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'invalid_state',
  'rate_limited',
  'unsupported_request',
  'approval_required',
  'policy_denied',
  'sandbox_error',
  'timeout',
  'internal',
] as const;
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];
