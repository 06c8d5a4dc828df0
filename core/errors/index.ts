/**
 * The one registry of error codes.
 *
 * Two vocabularies, deliberately separate:
 * - wire codes (PROTOCOL.md, `error.code` in a response): a small stable set clients branch on;
 * - TYRUM_ERR_* codes: precise internal causes, shown in CLI output and logs, each mapped to
 *   exactly one wire code. Extend both lists; never rename or reuse an entry.
 * `docs/errors.md` lists the same table; a test keeps the two in step.
 * The wire vocabulary itself is part of the contract and lives in schemas/.
 */

import { WIRE_ERROR_CODES, type WireErrorCode } from '../../schemas/src/wire-codes.js';

export { WIRE_ERROR_CODES, type WireErrorCode };

interface ErrorSpec {
  readonly wire: WireErrorCode;
  readonly description: string;
}

/** Every internal error code, its wire code and what it means. */
export const ERROR_CODES = {
  TYRUM_ERR_INVALID_REQUEST: { wire: 'invalid_request', description: 'A request or payload failed its schema.' },
  TYRUM_ERR_INVALID_ARGUMENT: { wire: 'invalid_request', description: 'A CLI or API argument is malformed.' },
  TYRUM_ERR_INVALID_CONFIG: { wire: 'invalid_request', description: 'Gateway configuration is invalid or unsafe.' },
  TYRUM_ERR_UNAUTHORIZED: { wire: 'unauthorized', description: 'Missing, unknown, expired or revoked token.' },
  TYRUM_ERR_FORBIDDEN: { wire: 'forbidden', description: 'The caller lacks the scope or role for this request.' },
  TYRUM_ERR_SCOPE_ESCALATION: { wire: 'forbidden', description: 'A token tried to mint a token with scopes it does not hold.' },
  TYRUM_ERR_ROLE_ESCALATION: { wire: 'forbidden', description: 'A token tried to mint a token with roles it does not hold (e.g. a client token minting a node token).' },
  TYRUM_ERR_TOKEN_LIFETIME: { wire: 'forbidden', description: 'A token with an expiry tried to mint a token that would outlive it (no expiry, or a later one).' },
  TYRUM_ERR_NOT_FOUND: { wire: 'not_found', description: 'The named object does not exist.' },
  TYRUM_ERR_CONFLICT: { wire: 'conflict', description: 'The request conflicts with the current state.' },
  TYRUM_ERR_INVALID_STATE: { wire: 'invalid_state', description: 'The object is not in a state that allows this.' },
  TYRUM_ERR_RATE_LIMITED: { wire: 'rate_limited', description: 'Too many requests; retry later.' },
  TYRUM_ERR_UNSUPPORTED_REQUEST: { wire: 'unsupported_request', description: 'Unknown request type.' },
  TYRUM_ERR_STORE_PRAGMA: { wire: 'internal', description: 'The database does not have the required durability pragmas.' },
  TYRUM_ERR_PAIRING_LIMIT: { wire: 'rate_limited', description: 'Too many node pairings already wait for an operator (limits.max_pending_pairings); deny or approve some first.' },
  TYRUM_ERR_NODE_NOT_PAIRED: { wire: 'forbidden', description: 'No approved node for this node tool (none, or not the one named).' },
  TYRUM_ERR_NODE_NOT_ALLOWLISTED: { wire: 'forbidden', description: "The capability is not in the node's allowlist, or the node now advertises another definition of it than the one approved." },
  TYRUM_ERR_NODE_AMBIGUOUS: { wire: 'conflict', description: 'More than one approved node may run this capability: name one (node.<capability>@<node>).' },
  TYRUM_ERR_NODE_NOT_READY: { wire: 'invalid_state', description: 'The node is connected but did not report the capability ready (capability.ready): a local permission or its consent blocks it.' },
  TYRUM_ERR_NODE_UNAVAILABLE: { wire: 'invalid_state', description: 'The node is paired and allowed but not connected; nothing was sent.' },
  TYRUM_ERR_NODE_REFUSED: { wire: 'forbidden', description: "The node refused the capability (its own operator's consent)." },
  TYRUM_ERR_NODE_CAPABILITY_FAILED: { wire: 'sandbox_error', description: 'The node ran the capability and reported a failure.' },
  TYRUM_ERR_NODE_OUTPUT_INVALID: { wire: 'sandbox_error', description: "The node's output does not match the capability's contract." },
  TYRUM_ERR_NODE_DISCONNECTED: { wire: 'internal', description: "The node's connection closed before it answered a request the gateway sent it." },
  TYRUM_ERR_NODE_CAPABILITY_UNKNOWN: { wire: 'invalid_request', description: 'A pairing approval names a capability the node did not advertise.' },
  TYRUM_ERR_STORE_IO: { wire: 'internal', description: 'The database could not make a commit durable (fdatasync failed); the store refuses further writes until the gateway restarts.' },
  TYRUM_ERR_STORE_MIGRATION: { wire: 'internal', description: 'A database migration failed or the schema is newer than this build.' },
  TYRUM_ERR_STORE_UNAVAILABLE: { wire: 'internal', description: 'The PostgreSQL server did not answer in time or the connection to it was lost: the statement failed, and so did the transaction it was part of (the store reconnects for the next one).' },
  TYRUM_ERR_HOME: { wire: 'internal', description: 'The gateway home directory is missing, unreadable or too permissive.' },
  TYRUM_ERR_AUDIT_CHECKPOINT: { wire: 'internal', description: 'Audit entries were committed but the signed checkpoint could not be written.' },
  TYRUM_ERR_AUDIT_BROKEN: { wire: 'internal', description: 'The audit chain failed verification.' },
  TYRUM_ERR_AUDIT_TAMPERED: { wire: 'internal', description: 'The audit log no longer extends its signed checkpoint (truncated, rewritten, or checkpoint missing or forged); the gateway refuses to start or sign over it.' },
  TYRUM_ERR_CONNECTION: { wire: 'internal', description: 'The client could not reach or stay connected to the gateway.' },
  TYRUM_ERR_SANDBOX_TIMEOUT: { wire: 'timeout', description: 'A plugin call or load exceeded its wall-clock budget; its worker was restarted.' },
  TYRUM_ERR_SANDBOX_TRAP: { wire: 'sandbox_error', description: 'The plugin trapped (unreachable, out-of-bounds access, stack overflow).' },
  TYRUM_ERR_SANDBOX_CRASH: { wire: 'sandbox_error', description: 'The worker running the plugin died; it was restarted.' },
  TYRUM_ERR_SANDBOX_PLUGIN_ERROR: { wire: 'sandbox_error', description: 'The plugin reported an error itself.' },
  TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE: { wire: 'sandbox_error', description: 'The plugin output exceeded its byte budget.' },
  TYRUM_ERR_SANDBOX_INPUT_TOO_LARGE: { wire: 'invalid_request', description: 'The input to a plugin call exceeded its byte limit.' },
  TYRUM_ERR_SANDBOX_BUDGET: { wire: 'sandbox_error', description: 'A per-call budget (host calls, allocations, egress, logs) ran out.' },
  TYRUM_ERR_SANDBOX_DENIED: { wire: 'sandbox_error', description: 'The plugin used a capability it was not granted.' },
  TYRUM_ERR_SANDBOX_HOST: { wire: 'internal', description: 'A host service failed while serving a plugin.' },
  TYRUM_ERR_SANDBOX_MODULE_REJECTED: { wire: 'sandbox_error', description: 'The wasm module failed a load-time check (imports, exports, memory).' },
  TYRUM_ERR_SANDBOX_DIGEST_MISMATCH: { wire: 'sandbox_error', description: 'The wasm bytes do not match the expected sha256 digest.' },
  TYRUM_ERR_SANDBOX_INSTANTIATE: { wire: 'sandbox_error', description: 'The module passed its checks but could not be instantiated.' },
  TYRUM_ERR_TIMEOUT: { wire: 'timeout', description: 'The operation did not finish in time.' },
  TYRUM_ERR_INTERNAL: { wire: 'internal', description: 'An unexpected internal failure.' },
  TYRUM_ERR_SECRET_KEY: { wire: 'internal', description: 'The secrets encryption key is missing, malformed or readable by group or others.' },
  TYRUM_ERR_SECRET_DECRYPT: { wire: 'internal', description: 'A stored secret could not be decrypted: wrong key, or the record was altered.' },
  TYRUM_ERR_MANIFEST_INVALID: { wire: 'invalid_request', description: 'A plugin manifest failed to parse or validate (syntax, schema, semver, duplicate ids, risk flags, unsafe JSON Schemas).' },
  TYRUM_ERR_PLUGIN_PACKAGE: { wire: 'invalid_request', description: 'A plugin directory or archive is malformed or unsafe (missing or oversized file, link, path escape, hostile archive entry).' },
  TYRUM_ERR_PLUGIN_INTEGRITY: { wire: 'sandbox_error', description: 'Plugin files do not match their expected sha256 digests (tampered or corrupted).' },
  TYRUM_ERR_PLUGIN_INCOMPATIBLE: { wire: 'invalid_request', description: "The plugin's engines.tyrum range does not include this gateway's host API version." },
  TYRUM_ERR_PLUGIN_DOWNGRADE: { wire: 'conflict', description: 'A lower plugin version than the installed one was offered without an explicit downgrade.' },
  TYRUM_ERR_PLUGIN_VERSION_CONFLICT: { wire: 'conflict', description: 'The same plugin id and version is already installed with different content.' },
  TYRUM_ERR_PLUGIN_CONFIG_INVALID: { wire: 'invalid_request', description: "A plugin's configuration failed its config_schema or named a secret handle that is missing or not granted." },
  TYRUM_ERR_POLICY_INVALID: { wire: 'invalid_request', description: 'A policy bundle failed to parse or validate (syntax, schema, duplicate rule ids, invalid globs).' },
  TYRUM_ERR_POLICY_DENIED: { wire: 'policy_denied', description: 'The active policy denies this tool call.' },
  TYRUM_ERR_APPROVAL_DENIED: { wire: 'policy_denied', description: 'An operator denied the approval this tool call needed.' },
  TYRUM_ERR_APPROVAL_EXPIRED: { wire: 'invalid_state', description: 'The approval expired before it was resolved or used; an expired approval counts as denied.' },
  TYRUM_ERR_APPROVAL_MISMATCH: { wire: 'approval_required', description: 'The approval does not cover this call: its arguments, tool definition or plugin digest differ from what was approved.' },
  TYRUM_ERR_APPROVAL_CONSUMED: { wire: 'invalid_state', description: 'The approval was already used; approvals are single use.' },
  TYRUM_ERR_LEASE_LOST: { wire: 'conflict', description: "A worker's lease on a run was taken over by another; its late write was rejected (fencing)." },
  TYRUM_ERR_OUTCOME_UNKNOWN: { wire: 'internal', description: 'A step with an external effect was cut off mid-flight; whether the effect happened is unknown and an operator must decide.' },
  TYRUM_ERR_STEP_INTERRUPTED: { wire: 'internal', description: 'An idempotent step was cut off mid-flight (crash, lease loss) more times than its attempts allow.' },
  TYRUM_ERR_POSTCONDITION_FAILED: { wire: 'sandbox_error', description: "The tool's output failed, or could not be checked against, the step's postcondition; the step is not a success." },
  TYRUM_ERR_MCP_SERVER: { wire: 'sandbox_error', description: 'An external MCP server could not be started or reached, broke the protocol, timed out or exceeded a limit.' },
  TYRUM_ERR_MCP_CONNECTION_LOST: { wire: 'sandbox_error', description: "The MCP server's connection ended while a call was in flight; whether the call took effect is unknown." },
  TYRUM_ERR_MCP_TOOL_ERROR: { wire: 'sandbox_error', description: 'An MCP tool reported an error result (isError) for this call.' },
  TYRUM_ERR_MCP_QUARANTINED: { wire: 'invalid_state', description: 'The MCP server or tool is quarantined: new, or its definition changed since an operator approved it.' },
  TYRUM_ERR_MCP_SCHEMA_REFUSED: { wire: 'invalid_request', description: "An MCP tool's schema was refused at registration (too large, too deep, remote refs, catastrophic patterns)." },
  TYRUM_ERR_PORT_IN_USE: { wire: 'internal', description: 'The address and port the gateway should listen on are taken by another process; choose another with --port (or "port" in config.json).' },
  TYRUM_ERR_HOME_LOCKED: { wire: 'conflict', description: 'Another gateway process is running on this home (the operating system holds <home>/gateway.lock.sqlite for it; <home>/gateway.lock names its pid); one gateway per home.' },
  TYRUM_ERR_BACKEND_NOT_CONFIGURED: { wire: 'invalid_state', description: 'No model backend is configured for agent turns (tyrum backend set).' },
  TYRUM_ERR_BACKEND_UNAVAILABLE: { wire: 'internal', description: 'The model backend could not be reached (connection refused, reset, DNS), also after retries.' },
  TYRUM_ERR_BACKEND_RATE_LIMITED: { wire: 'rate_limited', description: 'The model backend answered 429 (rate limited or out of quota), also after retries.' },
  TYRUM_ERR_BACKEND_HTTP: { wire: 'internal', description: 'The model backend answered an HTTP error that retrying cannot fix (401 bad key, 404 unknown model, 400 bad request), or a 5xx also after retries.' },
  TYRUM_ERR_BACKEND_TIMEOUT: { wire: 'timeout', description: 'The model backend did not answer (or stopped streaming) within its timeout.' },
  TYRUM_ERR_BACKEND_PROTOCOL: { wire: 'internal', description: "The model backend's answer is not a Chat Completions response (malformed JSON or event stream, missing fields, oversized)." },
  TYRUM_ERR_TURN_STEP_CAP: { wire: 'invalid_state', description: 'An agent turn reached its step cap (model calls per turn) without a final answer.' },
  TYRUM_ERR_CONVERSATION_QUEUE_FULL: { wire: 'rate_limited', description: 'The conversation already holds its maximum of messages waiting for a turn (limits.max_pending_messages); the message was not accepted.' },
  TYRUM_ERR_CHANNEL_UNVERIFIED: { wire: 'unauthorized', description: 'An inbound webhook failed its authenticity check (secret token, signature or timestamp window); nothing was stored.' },
  TYRUM_ERR_CHANNEL_DESTINATION: { wire: 'forbidden', description: "A channel adapter's outbound request named another origin, chat or thread than the conversation's; the host refused it." },
  TYRUM_ERR_CHANNEL_ADAPTER: { wire: 'sandbox_error', description: "A channel adapter's output does not match the channel ABI (docs/channels.md)." },
  TYRUM_ERR_CHANNEL_DELIVERY: { wire: 'internal', description: 'The chat platform refused a reply (an error other than 429/5xx, or ok:false), or it kept failing until the delivery attempts ran out.' },
  TYRUM_ERR_SCHEDULE_CRON: { wire: 'invalid_request', description: 'A schedule\'s cron expression is malformed or never fires (five fields, or six with seconds first; see docs/scheduler.md).' },
  TYRUM_ERR_SCHEDULE_TIMEZONE: { wire: 'invalid_request', description: 'A schedule names a time zone that is not an IANA zone known to this Node (e.g. UTC, Europe/Berlin).' },
  TYRUM_ERR_PLAYBOOK_INVALID: { wire: 'invalid_request', description: "A playbook (or its inputs) is not valid: not YAML/JSON, not the playbook schema, a step with no or two actions, a reference to an undeclared input or a later step, or inputs that fail the playbook's inputs schema (docs/playbooks.md)." },
  TYRUM_ERR_PLAYBOOK_REFERENCE: { wire: 'invalid_state', description: "A playbook step refers to a value that is absent when it runs (an input or an earlier step's output path); the workflow fails at that step." },
  TYRUM_ERR_RESUME_TOKEN_INVALID: { wire: 'forbidden', description: 'The resume token is not one this gateway issued (malformed, altered, or from another home).' },
  TYRUM_ERR_RESUME_TOKEN_USED: { wire: 'invalid_state', description: 'The resume token was already used, or its workflow is no longer waiting at that gate (resumed, cancelled or finished); tokens are single use.' },
  TYRUM_ERR_RESUME_TOKEN_EXPIRED: { wire: 'invalid_state', description: "The approval gate's resume token expired; an expired gate fails its workflow." },
  TYRUM_ERR_ARTIFACT_TOO_LARGE: { wire: 'invalid_request', description: 'An artifact is larger than limits.max_artifact_bytes; nothing was stored.' },
  TYRUM_ERR_ARTIFACT_QUOTA: { wire: 'rate_limited', description: 'Storing the artifact would take the artifacts over limits.max_artifacts_total_bytes; nothing was stored (remove old ones, tyrum gc, or raise the limit).' },
  TYRUM_ERR_ARTIFACT_MEDIA_TYPE: { wire: 'invalid_request', description: 'An artifact\'s media type is not a valid type/subtype (RFC 6838 names, optional parameters); nothing was stored.' },
  TYRUM_ERR_ARTIFACT_INVALID: { wire: 'invalid_request', description: 'An artifact a tool or node reported is malformed (not base64, missing content, bad name, too many), or carries a known secret value; nothing was stored.' },
  TYRUM_ERR_ARTIFACT_IO: { wire: 'internal', description: 'The artifact store could not write or read a blob (disk full, permissions, a blob missing or not matching its digest).' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a stable internal code, a wire code and optional structured details. */
export class TyrumError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TyrumError';
    this.code = code;
    this.details = details;
  }

  /** The protocol's error code for this error. */
  get wire(): WireErrorCode {
    return ERROR_CODES[this.code].wire;
  }
}

/** True when `e` is a TyrumError (optionally with the given code). */
export function isTyrumError(e: unknown, code?: ErrorCode): e is TyrumError {
  return e instanceof TyrumError && (code === undefined || e.code === code);
}
