import t from 'tap';
import { ERROR_CODES, WIRE_ERROR_CODES, TyrumError } from '../../../core/errors/index.js';

// Pinned: codes may be added, never renamed or removed (clients and scripts branch on them).
const PINNED_WIRE = ['invalid_request', 'unauthorized', 'forbidden', 'not_found', 'conflict', 'invalid_state', 'rate_limited', 'unsupported_request', 'approval_required', 'policy_denied', 'sandbox_error', 'timeout', 'internal'];
const PINNED_INTERNAL: Record<string, string> = {
  TYRUM_ERR_INVALID_REQUEST: 'invalid_request',
  TYRUM_ERR_INVALID_ARGUMENT: 'invalid_request',
  TYRUM_ERR_INVALID_CONFIG: 'invalid_request',
  TYRUM_ERR_UNAUTHORIZED: 'unauthorized',
  TYRUM_ERR_FORBIDDEN: 'forbidden',
  TYRUM_ERR_SCOPE_ESCALATION: 'forbidden',
  TYRUM_ERR_NOT_FOUND: 'not_found',
  TYRUM_ERR_CONFLICT: 'conflict',
  TYRUM_ERR_INVALID_STATE: 'invalid_state',
  TYRUM_ERR_RATE_LIMITED: 'rate_limited',
  TYRUM_ERR_UNSUPPORTED_REQUEST: 'unsupported_request',
  TYRUM_ERR_STORE_PRAGMA: 'internal',
  TYRUM_ERR_STORE_MIGRATION: 'internal',
  TYRUM_ERR_HOME: 'internal',
  TYRUM_ERR_AUDIT_CHECKPOINT: 'internal',
  TYRUM_ERR_AUDIT_BROKEN: 'internal',
  TYRUM_ERR_CONNECTION: 'internal',
  TYRUM_ERR_SANDBOX_TIMEOUT: 'timeout',
  TYRUM_ERR_SANDBOX_TRAP: 'sandbox_error',
  TYRUM_ERR_SANDBOX_CRASH: 'sandbox_error',
  TYRUM_ERR_SANDBOX_PLUGIN_ERROR: 'sandbox_error',
  TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE: 'sandbox_error',
  TYRUM_ERR_SANDBOX_INPUT_TOO_LARGE: 'invalid_request',
  TYRUM_ERR_SANDBOX_BUDGET: 'sandbox_error',
  TYRUM_ERR_SANDBOX_DENIED: 'sandbox_error',
  TYRUM_ERR_SANDBOX_HOST: 'internal',
  TYRUM_ERR_SANDBOX_MODULE_REJECTED: 'sandbox_error',
  TYRUM_ERR_SANDBOX_DIGEST_MISMATCH: 'sandbox_error',
  TYRUM_ERR_SANDBOX_INSTANTIATE: 'sandbox_error',
  TYRUM_ERR_TIMEOUT: 'timeout',
  TYRUM_ERR_INTERNAL: 'internal',
  TYRUM_ERR_SECRET_KEY: 'internal',
  TYRUM_ERR_SECRET_DECRYPT: 'internal',
  TYRUM_ERR_MANIFEST_INVALID: 'invalid_request',
  TYRUM_ERR_PLUGIN_PACKAGE: 'invalid_request',
  TYRUM_ERR_PLUGIN_INTEGRITY: 'sandbox_error',
  TYRUM_ERR_PLUGIN_INCOMPATIBLE: 'invalid_request',
  TYRUM_ERR_PLUGIN_DOWNGRADE: 'conflict',
  TYRUM_ERR_PLUGIN_VERSION_CONFLICT: 'conflict',
  TYRUM_ERR_PLUGIN_CONFIG_INVALID: 'invalid_request',
  TYRUM_ERR_POLICY_INVALID: 'invalid_request',
  TYRUM_ERR_POLICY_DENIED: 'policy_denied',
  TYRUM_ERR_APPROVAL_DENIED: 'policy_denied',
  TYRUM_ERR_APPROVAL_EXPIRED: 'invalid_state',
  TYRUM_ERR_APPROVAL_MISMATCH: 'approval_required',
  TYRUM_ERR_APPROVAL_CONSUMED: 'invalid_state',
  TYRUM_ERR_LEASE_LOST: 'conflict',
  TYRUM_ERR_OUTCOME_UNKNOWN: 'internal',
  TYRUM_ERR_STEP_INTERRUPTED: 'internal',
  TYRUM_ERR_POSTCONDITION_FAILED: 'sandbox_error',
  TYRUM_ERR_MCP_SERVER: 'sandbox_error',
  TYRUM_ERR_MCP_CONNECTION_LOST: 'sandbox_error',
  TYRUM_ERR_MCP_TOOL_ERROR: 'sandbox_error',
  TYRUM_ERR_MCP_QUARANTINED: 'invalid_state',
  TYRUM_ERR_MCP_SCHEMA_REFUSED: 'invalid_request',
};

t.test('the wire vocabulary starts with PROTOCOL.md\'s list, in order, unchanged', async (t) => {
  t.same(WIRE_ERROR_CODES.slice(0, PINNED_WIRE.length), PINNED_WIRE);
});

t.test('no internal error code was renamed, removed or remapped', async (t) => {
  for (const [code, wire] of Object.entries(PINNED_INTERNAL)) {
    t.equal((ERROR_CODES as Record<string, { wire: string }>)[code]?.wire, wire, code);
  }
});

t.test('every internal code maps to a wire code and has a description', async (t) => {
  for (const [code, spec] of Object.entries(ERROR_CODES)) {
    t.match(code, /^TYRUM_ERR_[A-Z_]+$/);
    t.ok((WIRE_ERROR_CODES as readonly string[]).includes(spec.wire), code);
    t.ok(spec.description.length > 10, code);
  }
});

t.test('a TyrumError carries its code, wire code and details', async (t) => {
  const e = new TyrumError('TYRUM_ERR_SCOPE_ESCALATION', 'nope', { scopes: ['operator.admin'] });
  t.equal(e.wire, 'forbidden');
  t.equal(e.code, 'TYRUM_ERR_SCOPE_ESCALATION');
  t.same(e.details, { scopes: ['operator.admin'] });
  t.ok(e instanceof Error);
});
