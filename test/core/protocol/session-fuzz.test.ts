/**
 * TESTPLAN E3: property-based fuzzing of the connection state machine. `Session` is driven
 * through an in-memory Transport with sequences of frames: an optional valid handshake made with
 * a real Ed25519 device key, then random envelopes (real and made-up types, wrong field types,
 * random payloads), non-JSON text, invalid UTF-8, binary frames, hostile nesting and
 * `__proto__` keys. Whatever arrives, the session must never throw or leave a rejection
 * unhandled, must only send schema-valid frames, must refuse everything but the handshake until
 * the handshake completes, and must close only with PROTOCOL.md's codes.
 */
import t from 'tap';
import fc, { type Arbitrary } from 'fast-check';
import { randomUUID } from 'node:crypto';
import { Session, type Transport, type SessionHooks, type SessionLimits } from '../../../core/protocol/session.js';
import { InflightLimiter } from '../../../core/protocol/inflight.js';
import { validate } from '../../../core/protocol/validate.js';
import { TyrumError, ERROR_CODES, type ErrorCode } from '../../../core/errors/index.js';
import type { AuthenticatedToken } from '../../../core/auth/tokens.js';
import { OPERATIONS, EVENTS, ResponseEnvelope, EventEnvelope, RequestEnvelope, SCOPES, ROLES, type OperationType, type Role, type Scope } from '../../../schemas/index.js';
import { newDevice, signTranscript, type RawDevice } from '../../helpers/gateway.js';

/** PROTOCOL.md "Close codes", the only codes a session may choose. */
const PROTOCOL_CLOSE_CODES = new Set([4001, 4002, 4003, 4005, 4006, 4007, 1009, 1013]);
/** A WebSocket close frame carries at most 123 bytes of reason (RFC 6455 §5.5); `ws` throws beyond that. */
const MAX_CLOSE_REASON_BYTES = 123;

const HANDSHAKE_TYPES = new Set(['connect.init', 'connect.proof']);
const OP_TYPES = Object.keys(OPERATIONS) as OperationType[];
type NonHandshakeOp = Exclude<OperationType, 'connect.init' | 'connect.proof' | 'pairing.credential'>;

const LIMITS: SessionLimits = {
  maxFrameBytes: 64 * 1024,
  maxJsonDepth: 16,
  maxJsonNodes: 2000,
  maxQueuedBytes: 1024 * 1024,
  handshakeTimeoutMs: 60_000,
};
/** Each session driven alone gets a budget of its own of this many requests in flight. */
const MAX_INFLIGHT = 3;

const ISO = '2026-01-02T03:04:05.678Z';
const HASH = 'a'.repeat(64);
const TOKEN_INFO = { token_id: '0123456789abcdef', label: 'x', scopes: ['operator.read'], roles: ['client'], created_at: ISO, expires_at: null, revoked_at: null, last_used_at: null, kind: 'access', device_id: null };

const RUN_DETAIL = {
  run: { id: 'run_1', kind: 'tool', state: 'succeeded', created_by: 'tok', idempotency_key: null, request_hash: HASH, created_at: ISO, updated_at: ISO, finished_at: ISO, cancel_requested: false, pause_reason: null, next_attempt_at: ISO, result: { ok: 1 }, error: null, lease: null },
  steps: [
    {
      idx: 0, tool_id: 'text-utils.word_count', args: {}, args_hash: HASH, idempotency_key: null, state: 'succeeded', idempotent: true, max_attempts: 3, timeout_ms: 30000, postcondition: null,
      policy: { decision: 'allow', enforced: true, snapshot_id: 'pol_x', detail: {} }, approval_id: null, definition_hash: HASH, plugin_digest: HASH, result: { ok: 1 }, error: null, duration_ms: 1, usage: null, started_at: ISO, finished_at: ISO,
      attempts: [{ n: 1, state: 'succeeded', owner: 'gw', fencing_token: 1, started_at: ISO, finished_at: ISO, duration_ms: 1, usage: null, result: { ok: 1 }, error: null, evidence: null }],
    },
  ],
};
const APPROVAL = { id: 'apr_1', run_id: 'run_1', step_idx: 0, tool_id: 'notes.add_note', args: {}, args_hash: HASH, definition_hash: HASH, plugin_digest: HASH, requested_by: 'tok', state: 'pending', mode: null, reason: null, created_at: ISO, expires_at: ISO, resolved_at: null, resolved_by: null, consumed_at: null };
const EFFECTIVE = { egress: [], secrets: [], kv: null, memory: { max_pages: 256 }, time: { timeout_ms: 5000 }, accepted_risks: [], missing_risks: [] };
const PLUGIN_INFO = { id: 'text-utils', version: '1.0.0', name: 'Text', description: 'd', publisher: 'p', state: 'disabled', manifest_sha256: HASH, wasm_sha256: HASH, risk: [], tools: ['text-utils.word_count'], grant: null, effective: EFFECTIVE, blockers: [], pending_upgrade: null, installed_at: ISO, updated_at: ISO };
const MANIFEST = { manifest_version: 1, id: 'text-utils', name: 'Text', version: '1.0.0', description: 'd', publisher: 'p', engines: { tyrum: '^1.0.0' }, wasm: { path: 'plugin.wasm', sha256: HASH }, contributes: { tools: [] } };
const TOOL_INFO = { tool_id: 'text-utils.word_count', plugin_id: 'text-utils', plugin_version: '1.0.0', description: 'd', effect: 'read_only', input_schema: { type: 'object' }, output_schema: { type: 'object' }, definition_hash: HASH, plugin_digest: HASH };

const PAIRING_INFO = { pairing_id: 'pair_0123456789abcdef', device_id: 'dev_' + 'a'.repeat(52), state: 'awaiting_human', trust_level: null, node_name: null, label: 'box', platform: null, version: null, remote_address: '127.0.0.1', advertised: [{ id: 'fs.read', version: '1', definition_hash: HASH }], capability_allowlist: [], requested_at: ISO, resolved_at: null, resolved_by: null, reason: null, credential_delivered_at: null, connected: true };

const CONVERSATION_INFO = { conversation_id: 'conv_0123456789abcdef', channel: 'operator', account: 'tok', thread: null, title: null, created_by: 'tok', created_at: ISO, updated_at: ISO };
const WORKFLOW_INFO = { workflow_id: 'wf_0123456789abcdef', name: 'p', version: '1', plan_hash: '0'.repeat(64), state: 'running', step_idx: 0, inputs: {}, steps: [], gate: null, error: null, created_by: 't', created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z', finished_at: null };
const ARTIFACT_INFO = { artifact_id: `sha256:${'a'.repeat(64)}`, size: 3, media_type: 'text/plain', name: 'a.txt', created_at: ISO, created_by: 'tok', download_path: `/artifacts/sha256:${'a'.repeat(64)}` };
const SENDER_INFO = { sender_id: '42', state: 'pending', name: null, code: 'ABCD-EFGH', code_expires_at: ISO, updated_at: ISO };
const MESSAGE_INFO = { message_id: 'msg_0123456789abcdef', seq: 1, role: 'user', content: 'hi', tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: { source: 'operator' }, usage: null, created_at: ISO };

const MCP_SERVER = { name: 'time', origin: 'operator', description: '', state: 'quarantined', transport: 'stdio', spec: { transport: 'stdio', command: '/usr/bin/env' }, spec_digest: HASH, created_at: ISO, approved_at: null, approved_by: null, health: null, tools: { approved: 0, pending: 1, changed: 0, refused: 0, removed: 0 } };

/** A result that satisfies each operation's result schema (checked below, so the property is not vacuous). */
const RESULTS: Record<NonHandshakeOp, (payload: Record<string, unknown>) => Record<string, unknown>> = {
  ping: () => ({ pong: true, server_time: new Date().toISOString() }),
  'audit.list': () => ({ entries: [{ seq: 1, ts: ISO, type: 'auth.failed', actor: { kind: 'cli' }, data: { a: [1, 'x'] }, prev_hash: '0'.repeat(64), hash: HASH }], next_after_seq: 1 }),
  'audit.verify': () => ({ ok: true, entries: 1, head_hash: HASH, checkpoint_seq: 1, first_bad_seq: null, reason: null }),
  'doctor.run': () => ({ ok: true, checks: [{ name: 'home', status: 'ok', detail: '/h (mode 700)' }], checked_at: ISO }),
  'token.create': () => ({ token: `tyrum_0123456789abcdef_${'A'.repeat(43)}`, info: TOKEN_INFO }),
  'token.list': () => ({ tokens: [TOKEN_INFO] }),
  'token.revoke': (p) => ({ token_id: p.token_id, revoked_at: ISO }),
  'plugin.list': () => ({ plugins: [PLUGIN_INFO] }),
  'plugin.get': () => ({ plugin: PLUGIN_INFO, manifest: MANIFEST }),
  'plugin.enable': () => ({ plugin: { ...PLUGIN_INFO, state: 'enabled' } }),
  'plugin.disable': () => ({ plugin: PLUGIN_INFO }),
  'plugin.grant': () => ({ plugin: PLUGIN_INFO }),
  'plugin.revoke': () => ({ plugin: PLUGIN_INFO }),
  'tool.list': () => ({ tools: [TOOL_INFO] }),
  'tool.invoke': (p) => ({ run_id: 'run_1', state: 'succeeded', tool_id: p.tool_id, output: { words: 2 }, error: null, approval_id: null, policy: { decision: 'allow', enforced: true, snapshot_id: 'pol_x' }, definition_hash: HASH, plugin_digest: HASH, duration_ms: 1.5, usage: { wall_ms: 1, host_calls: 3, alloc_bytes: 10, egress_bytes: 0, output_bytes: 12, mem_pages_peak: 2, log_lines: 0 } }),
  'workflow.start': () => RUN_DETAIL,
  'run.get': () => RUN_DETAIL,
  'run.list': () => ({ runs: [RUN_DETAIL.run] }),
  'run.cancel': () => ({ run: RUN_DETAIL.run }),
  'run.resolve': () => ({ run: RUN_DETAIL.run }),
  'approval.list': () => ({ approvals: [APPROVAL] }),
  'approval.resolve': () => ({ approval: { ...APPROVAL, state: 'approved' }, override_id: null }),
  'policy.get': () => ({ snapshot_id: 'pol_x', bundle: { policy_version: 1 }, history: [], overrides: [] }),
  'policy.set': () => ({ snapshot_id: 'pol_x', changed: true }),
  'policy.explain': () => ({ decision: 'allow', enforced: 'allow', snapshot_id: 'pol_x', source: 'default', matched: [], text: 'allowed by default' }),
  'policy.override.revoke': () => ({ override: { id: 'ovr_1' }, changed: true }),
  'event.list': () => ({ events: [{ cursor: 1, event_id: 'e1', type: 'run.updated', occurred_at: ISO, payload: { run_id: 'run_1', state: 'queued' } }], next_after: 1 }),
  'artifact.list': () => ({ artifacts: [{ artifact: ARTIFACT_INFO, attachment: { run_id: 'run_x', step_idx: 0, attempt: 1, kind: 'evidence', name: 'a.txt', media_type: 'text/plain', attached_at: ISO, attached_by: 'tok' } }] }),
  'artifact.get': () => ({ artifact: ARTIFACT_INFO, attachments: [] }),
  'secret.list': () => ({ secrets: [{ name: 'API_TOKEN', version: 1, destinations: ['api.example.com'], created_at: ISO, rotated_at: ISO }] }),
  'pairing.list': () => ({ pairings: [PAIRING_INFO] }),
  'attempt.evidence': () => ({ accepted: true }),
  'mcp.list': () => ({ servers: [MCP_SERVER] }),
  'mcp.diff': () => ({ server: MCP_SERVER, tools: [{ tool_id: 'mcp.time.now', name: 'now', status: 'changed', refused: null, approved: { name: 'now' }, observed: { name: 'now', description: 'x' }, fields: [{ field: 'description', approved: null, observed: 'x' }] }] }),
  'mcp.approve': () => ({ approved: [{ tool_id: 'mcp.time.now', definition_hash: HASH, effect: 'read_only' }], skipped: [] }),
  'node.bootstrap': () => ({ token: `tyrum_0123456789abcdef_${'A'.repeat(43)}`, token_id: '0123456789abcdef', expires_at: ISO }),
  'presence.list': () => ({ entries: [{ device_id: 'dev_' + 'a'.repeat(52), role: 'node', label: 'box', mode: 'node', platform: null, version: null, connected: true, connections: 1, connected_since: ISO, last_seen_at: ISO, remote_address: '127.0.0.1' }] }),
  'capability.ready': () => ({ pairing_id: 'pair_0123456789abcdef', state: 'approved', dispatchable: ['fs.read'] }),
  'pairing.approve': () => ({ pairing: { ...PAIRING_INFO, state: 'approved', trust_level: 'remote', node_name: 'box' } }),
  'pairing.deny': () => ({ pairing: { ...PAIRING_INFO, state: 'denied' } }),
  'pairing.revoke': () => ({ pairing: { ...PAIRING_INFO, state: 'revoked' } }),
  'conversation.create': () => ({ conversation: CONVERSATION_INFO }),
  'conversation.list': () => ({ conversations: [CONVERSATION_INFO] }),
  'conversation.get': () => ({ conversation: CONVERSATION_INFO, messages: [MESSAGE_INFO], turns: [], deliveries: [] }),
  'conversation.send': () => ({ message: MESSAGE_INFO, turn_id: 'turn_0123456789abcdef', existing: false }),
  'channel.list': () => ({ channels: [{ channel: 'telegram/bot', plugin_id: 'telegram', channel_id: 'telegram', api_base: 'https://api.telegram.org', dm_policy: 'pairing', verify_secret: 'TG_WEBHOOK', credential_secret: null, webhook_path: '/channels/telegram/bot/webhook', plugin_enabled: true, created_at: ISO }] }),
  'channel.senders': () => ({ senders: [SENDER_INFO] }),
  'channel.sender.decide': () => ({ sender: SENDER_INFO }),
  'workflow.get': () => ({ workflow: WORKFLOW_INFO }),
  'workflow.list': () => ({ workflows: [WORKFLOW_INFO] }),
  'workflow.resume': () => ({ workflow: WORKFLOW_INFO }),
  'workflow.cancel': () => ({ workflow: WORKFLOW_INFO }),
};

// Real device keys, made once (key generation is the slow part of a handshake).
const DEVICES: readonly RawDevice[] = [newDevice(), newDevice()];

// ---- frame specs: what to send, resolved against the session's replies at send time ---------

type Outcome = 'ok' | 'ok-later' | 'tyrum' | 'error' | 'sync-throw';

type FrameBody =
  | { k: 'init'; role: string; rev: number; tamper: 'none' | 'device_id' | 'pubkey' | 'extra-key'; device: 0 | 1 }
  | { k: 'proof'; mode: 'valid' | 'other-key' | 'wrong-connection' | 'garbage' }
  | { k: 'env'; fields: Array<[string, unknown]> }
  | { k: 'json'; value: unknown }
  | { k: 'text'; text: string }
  | { k: 'bytes'; bytes: Uint8Array; binary: boolean }
  | { k: 'deep'; depth: number }
  | { k: 'proto'; key: '__proto__' | 'constructor' | 'prototype'; type: string };
type FrameSpec = FrameBody & { pause: boolean };

const hex16 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 16, maxLength: 16 });

const requestId = fc.oneof(
  { weight: 8, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 140 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
);

const requestType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...OP_TYPES) },
  { weight: 2, arbitrary: fc.constantFrom('task.execute', 'plugin.list', 'run.get', 'approval.resolve') },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}$/) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
);

const anyish = fc.oneof(fc.integer(), fc.double(), fc.string(), fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }));
const payload = fc.oneof(
  fc.constant({}),
  fc.record({ after_seq: fc.oneof(fc.nat(), anyish), limit: fc.oneof(fc.integer({ min: 0, max: 1001 }), anyish), type: fc.oneof(fc.string({ maxLength: 70 }), anyish) }, { requiredKeys: [] }),
  fc.record({ scopes: fc.oneof(fc.subarray([...SCOPES], { minLength: 1 }), fc.array(anyish, { maxLength: 6 })), roles: fc.oneof(fc.subarray([...ROLES]), anyish), label: fc.oneof(fc.string(), anyish), ttl_seconds: fc.oneof(fc.integer({ min: 0, max: 400_000_000 }), anyish) }, { requiredKeys: [] }),
  fc.record({ token_id: fc.oneof(hex16, anyish) }),
  fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** Unknown envelope keys; ASCII only, see KNOWN BUG B below. */
const extraKey = fc.string({ unit: 'binary', maxLength: 200 });

const noneMostly = <T>(arb: Arbitrary<T[]>) => fc.oneof({ weight: 8, arbitrary: fc.constant([] as T[]) }, { weight: 1, arbitrary: arb });

const randomEnvelope = fc
  .record({
    request_id: requestId,
    type: requestType,
    payload,
    extra: noneMostly(fc.array(fc.tuple(extraKey, fc.jsonValue({ maxDepth: 1 })), { minLength: 1, maxLength: 2 })),
    omit: noneMostly(fc.subarray(['request_id', 'type', 'payload'] as const, { minLength: 1, maxLength: 2 })),
  })
  .map(({ request_id, type, payload: p, extra, omit }) => {
    const fields: Array<[string, unknown]> = [
      ['request_id', request_id],
      ['type', type],
      ['payload', p],
    ];
    return { k: 'env' as const, fields: [...fields.filter(([name]) => !(omit as readonly string[]).includes(name)), ...extra] };
  });

/** Payloads that satisfy each operation's schema, so sequences get past validation to the handler. */
const VALID_PAYLOADS: Record<OperationType, Arbitrary<Record<string, unknown>>> = {
  'connect.init': fc.constant({}),
  'connect.proof': fc.constant({}),
  ping: fc.constant({}),
  'audit.list': fc.record({ after_seq: fc.nat(), limit: fc.integer({ min: 1, max: 1000 }), type: fc.string({ minLength: 1, maxLength: 64 }) }, { requiredKeys: [] }),
  'audit.verify': fc.constant({}),
  'doctor.run': fc.constant({}),
  'token.create': fc.record(
    { scopes: fc.subarray([...SCOPES], { minLength: 1 }), roles: fc.subarray([...ROLES], { minLength: 1 }), label: fc.string({ maxLength: 128 }), ttl_seconds: fc.integer({ min: 60, max: 10 * 365 * 24 * 3600 }) },
    { requiredKeys: ['scopes'] },
  ),
  'token.list': fc.constant({}),
  'token.revoke': fc.record({ token_id: hex16 }),
  'plugin.list': fc.constant({}),
  'plugin.get': fc.record({ plugin_id: fc.constantFrom('text-utils', 'http-api') }),
  'plugin.enable': fc.record({ plugin_id: fc.constantFrom('text-utils', 'http-api') }),
  'plugin.disable': fc.record({ plugin_id: fc.constantFrom('text-utils', 'http-api') }),
  'plugin.grant': fc.record({ plugin_id: fc.constantFrom('text-utils'), all_requested: fc.boolean(), accept_risks: fc.subarray(['network', 'secrets'] as const) }, { requiredKeys: ['plugin_id'] }),
  'plugin.revoke': fc.record({ plugin_id: fc.constantFrom('text-utils') }),
  'tool.list': fc.constant({}),
  'tool.invoke': fc.record({ tool_id: fc.constantFrom('text-utils.word_count', 'a.b'), args: fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k)), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }) }),
  'secret.list': fc.constant({}),
  'artifact.list': fc.record({ run_id: fc.constant('run_x') }),
  'artifact.get': fc.record({ artifact_id: fc.constant(`sha256:${'a'.repeat(64)}`) }),
  'workflow.start': fc.record({ steps: fc.constant([{ tool_id: 'text-utils.word_count', args: { text: 'a' } }]) }),
  'run.get': fc.record({ run_id: fc.constantFrom('run_1', 'nope') }),
  'run.list': fc.record({ limit: fc.integer({ min: 1, max: 500 }) }, { requiredKeys: [] }),
  'run.cancel': fc.record({ run_id: fc.constantFrom('run_1') }),
  'run.resolve': fc.record({ run_id: fc.constantFrom('run_1'), step_idx: fc.nat(3), action: fc.constantFrom('retry' as const, 'skip' as const, 'fail' as const) }),
  'approval.list': fc.record({ state: fc.constantFrom('pending' as const, 'approved' as const) }, { requiredKeys: [] }),
  'approval.resolve': fc.record({ approval_id: fc.constantFrom('apr_1'), decision: fc.constantFrom('approved' as const, 'denied' as const) }),
  'policy.get': fc.constant({}),
  'policy.set': fc.record({ bundle: fc.constant({ policy_version: 1, mode: 'enforce', rules: [] }) }),
  'policy.explain': fc.record({ tool_id: fc.constantFrom('text-utils.word_count') }),
  'policy.override.revoke': fc.record({ override_id: fc.constantFrom('ovr_1') }),
  'event.list': fc.record({ after: fc.nat(), limit: fc.integer({ min: 1, max: 1000 }) }, { requiredKeys: [] }),
  'pairing.list': fc.record({ state: fc.constantFrom('awaiting_human', 'approved', 'denied', 'revoked'), limit: fc.integer({ min: 1, max: 500 }) }, { requiredKeys: [] }),
  'pairing.approve': fc.record({ pairing_id: fc.constant('pair_0123456789abcdef'), trust_level: fc.constantFrom('local', 'remote'), capability_allowlist: fc.constant([{ id: 'fs.read' }]) }),
  'pairing.deny': fc.record({ pairing_id: fc.constant('pair_0123456789abcdef') }),
  'pairing.revoke': fc.record({ pairing_id: fc.constant('pair_0123456789abcdef') }),
  'conversation.create': fc.record({ title: fc.string({ minLength: 1, maxLength: 20 }) }, { requiredKeys: [] }),
  'conversation.list': fc.record({ limit: fc.integer({ min: 1, max: 500 }) }, { requiredKeys: [] }),
  'conversation.get': fc.record({ conversation_id: fc.constant('conv_0123456789abcdef') }),
  'conversation.send': fc.record({ conversation_id: fc.constant('conv_0123456789abcdef'), text: fc.string({ minLength: 1, maxLength: 50 }) }),
  'channel.list': fc.constant({}),
  'channel.senders': fc.record({ channel: fc.constant('telegram/bot') }),
  'channel.sender.decide': fc.record({ channel: fc.constant('telegram/bot'), sender: fc.constant('42'), action: fc.constantFrom('allow', 'deny', 'remove') }),
  'workflow.get': fc.record({ workflow_id: fc.constant('wf_0123456789abcdef') }),
  'workflow.list': fc.record({ limit: fc.integer({ min: 1, max: 500 }) }),
  'workflow.resume': fc.record({ token: fc.string({ minLength: 1, maxLength: 64 }) }),
  'workflow.cancel': fc.record({ workflow_id: fc.constant('wf_0123456789abcdef') }),
  'pairing.credential': fc.constant({}),
  'mcp.list': fc.constant({}),
  'mcp.diff': fc.record({ name: fc.constantFrom('time', 'fs-server'), all: fc.boolean() }, { requiredKeys: ['name'] }),
  'mcp.approve': fc.record({ name: fc.constantFrom('time'), tools: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 3 }), read_only: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 3 }) }, { requiredKeys: ['name'] }),
  'node.bootstrap': fc.record({ ttl_seconds: fc.integer({ min: 60, max: 900 }), label: fc.string({ minLength: 1, maxLength: 100 }) }, { requiredKeys: [] }),
  'presence.list': fc.constant({}),
  'attempt.evidence': fc.record({ dispatch_id: fc.constant('dsp_' + '0'.repeat(24)), seq: fc.nat({ max: 1023 }), evidence: fc.constant({ step: 'x' }) }),
  'capability.ready': fc.record({ capabilities: fc.constant([{ id: 'fs.read', version: '1', ready: true }]) }),
};

/** A well-formed envelope for a real operation, usually with a valid payload. */
const targetedEnvelope = fc
  .constantFrom(...OP_TYPES)
  .chain((type) => fc.tuple(fc.constant(type), fc.oneof({ weight: 4, arbitrary: VALID_PAYLOADS[type] }, { weight: 1, arbitrary: payload }), fc.string({ minLength: 1, maxLength: 12 })))
  .map(([type, p, rid]) => ({ k: 'env' as const, fields: [['request_id', rid], ['type', type], ['payload', p]] as Array<[string, unknown]> }));

const frameBody = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant('init' as const), role: fc.oneof({ weight: 5, arbitrary: fc.constantFrom<string>(...ROLES) }, { weight: 1, arbitrary: fc.string() }), rev: fc.oneof({ weight: 5, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 1_000_000 }) }), tamper: fc.constantFrom('none', 'none', 'none', 'device_id', 'pubkey', 'extra-key'), device: fc.constantFrom(0 as const, 1 as const) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('proof' as const), mode: fc.constantFrom('valid', 'valid', 'other-key', 'wrong-connection', 'garbage') }) },
  { weight: 12, arbitrary: targetedEnvelope },
  { weight: 4, arbitrary: randomEnvelope },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('json' as const), value: fc.jsonValue({ maxDepth: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('text' as const), text: fc.string({ unit: 'binary', maxLength: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 64 }), binary: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('deep' as const), depth: fc.integer({ min: LIMITS.maxJsonDepth - 3, max: LIMITS.maxJsonDepth + 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('proto' as const), key: fc.constantFrom('__proto__' as const, 'constructor' as const, 'prototype' as const), type: fc.constantFrom(...OP_TYPES) }) },
);
const withPause = (body: Arbitrary<FrameBody>): Arbitrary<FrameSpec> => fc.tuple(body, fc.boolean()).map(([b, pause]) => ({ ...b, pause }) as FrameSpec);
const frame = withPause(frameBody);
/** Mostly well-formed requests, so sequences run long after the handshake before anything closes them. */
const benignFrame = withPause(fc.oneof({ weight: 8, arbitrary: targetedEnvelope }, { weight: 1, arbitrary: randomEnvelope }));

const scenario = fc.record({
  /** Start with a valid connect.init (+ connect.proof for 'full'), or with nothing. */
  prefix: fc.constantFrom<'full' | 'init' | 'none'>('full', 'full', 'full', 'init', 'none'),
  frames: fc.oneof(fc.array(frame, { maxLength: 25 }), fc.tuple(fc.array(benignFrame, { maxLength: 25 }), fc.array(frame, { maxLength: 2 })).map(([a, b]) => [...a, ...b])),
  scopes: fc.oneof(fc.constant([...SCOPES]), fc.subarray([...SCOPES])),
  roles: fc.subarray([...ROLES], { minLength: 1 }),
  outcomes: fc.array(fc.constantFrom<Outcome>('ok', 'ok', 'ok-later', 'tyrum', 'error', 'sync-throw'), { minLength: 1, maxLength: 8 }),
  errorCodes: fc.array(fc.constantFrom(...(Object.keys(ERROR_CODES) as ErrorCode[])), { minLength: 1, maxLength: 4 }),
  /** After this many sends the transport reports a full send buffer (slow consumer), if set. */
  congestAfter: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat({ max: 12 }) }),
});
type Scenario = typeof scenario extends Arbitrary<infer S> ? S : never;

// ---- the harness ------------------------------------------------------------------------------

class MemTransport implements Transport {
  readonly sent: string[] = [];
  readonly closes: Array<{ code: number; reason: string }> = [];
  congestAfter: number | undefined;
  send(text: string): void {
    this.sent.push(text);
  }
  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }
  bufferedAmount(): number {
    return this.congestAfter !== undefined && this.sent.length >= this.congestAfter ? LIMITS.maxQueuedBytes + 1 : 0;
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function raw(fields: Array<[string, unknown]>): string {
  return `{${fields.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`;
}

/** Independent statement of the codec limits: nesting, value count and forbidden keys. */
function withinCodecLimits(root: unknown): boolean {
  let nodes = 0;
  const ok = (v: unknown, depth: number): boolean => {
    nodes++;
    if (v === null || typeof v !== 'object') return true;
    if (depth > LIMITS.maxJsonDepth) return false;
    if (Array.isArray(v)) return v.every((x) => ok(x, depth + 1));
    return Object.keys(v).every((k) => !['__proto__', 'constructor', 'prototype'].includes(k) && ok((v as Record<string, unknown>)[k], depth + 1));
  };
  return ok(root, 1) && nodes <= LIMITS.maxJsonNodes;
}

function parseSent(text: string): Record<string, unknown> {
  return JSON.parse(text) as Record<string, unknown>;
}

/** Runs one scenario; returns a description of the first violated property, or null. */
async function run(sc: Scenario): Promise<string | null> {
  const transport = new MemTransport();
  transport.congestAfter = sc.congestAfter;
  const token: AuthenticatedToken = { id: 'fedcba9876543210', label: 'fuzz', scopes: sc.scopes as Scope[], roles: sc.roles as Role[], expires_at: null, kind: 'access', device_id: null };
  const problems: string[] = [];
  let calls = 0;
  let pending = 0;
  let session: Session | null = null;
  const hooks: SessionHooks = {
    handle(type, payload, peer) {
      const spec = OPERATIONS[type];
      const allowed = (spec.roles as readonly string[]).includes(peer.role) && (spec.scopes === 'any' || spec.scopes.some((sc) => token.scopes.includes(sc)));
      if (!session?.isReady || !allowed) problems.push(`handle reached for ${type} by role ${peer.role} with scopes ${token.scopes.join(',')} (ready: ${session?.isReady})`);
      const outcome = sc.outcomes[calls % sc.outcomes.length]!;
      const code = sc.errorCodes[calls % sc.errorCodes.length]!;
      calls++;
      if (!Object.hasOwn(RESULTS, type)) problems.push(`handle called with ${type}`);
      if (validate(OPERATIONS[type].payload, payload).length > 0) problems.push(`handle got a payload that fails the ${type} schema`);
      if (outcome === 'sync-throw') throw new TyrumError(code, 'thrown synchronously');
      pending++;
      return (async () => {
        try {
          if (outcome === 'ok-later') await tick();
          else await Promise.resolve();
          if (outcome === 'tyrum') throw new TyrumError(code, `failed with ${code}`, { why: 'fuzz' });
          if (outcome === 'error') throw new Error('boom');
          return RESULTS[type as NonHandshakeOp](payload);
        } finally {
          pending--;
        }
      })();
    },
    audit(type, actor) {
      if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/.test(type) || typeof actor.kind !== 'string') problems.push(`bad audit call ${type}`);
    },
    authFailed(reason, closeCode) {
      if (![4001, 4006, 4007].includes(closeCode) || reason.length === 0) problems.push(`authFailed with code ${closeCode}`);
    },
    emit(type, p) {
      const issues = validate(EVENTS[type].payload, p);
      if (issues.length > 0) problems.push(`emitted ${type} with an invalid payload: ${JSON.stringify(issues)}`);
      // The gateway publishes events to every handshaken admin connection; this one stands in for them.
      if (session?.peer && token.scopes.includes('operator.admin')) session.sendEvent(randomUUID(), type, new Date().toISOString(), p);
    },
    onDeviceSeen() {},
    log() {},
  };
  session = new Session(transport, token, '127.0.0.1', LIMITS, hooks, new InflightLimiter(MAX_INFLIGHT));

  let phase: 'init' | 'proof' | 'ready' = 'init';
  let initSent: { role: string; rev: number; device: RawDevice } | null = null;
  let challenge: { connection_id: string; challenge: string } | null = null;
  let framesWhileReady = 0;
  let n = 0;
  const sentIds = new Set<string>();

  const init: FrameSpec = { k: 'init', role: sc.roles[0]!, rev: 1, tamper: 'none', device: 0, pause: false };
  const proof: FrameSpec = { k: 'proof', mode: 'valid', pause: false };
  const specs: FrameSpec[] = sc.prefix === 'full' ? [init, proof, ...sc.frames] : sc.prefix === 'init' ? [init, ...sc.frames] : sc.frames;

  for (const spec of specs) {
    let text: string | null = null;
    let bytes: Uint8Array | null = null;
    let binary = false;
    switch (spec.k) {
      case 'init': {
        const dev = DEVICES[spec.device]!;
        const other = DEVICES[1 - spec.device]!;
        const device: Record<string, unknown> = { device_id: spec.tamper === 'device_id' ? other.device_id : dev.device_id, pubkey: spec.tamper === 'pubkey' ? dev.pubkey.slice(0, -4) + 'AAAA' : dev.pubkey };
        if (spec.tamper === 'extra-key') device.admin = true;
        initSent = { role: spec.role, rev: spec.rev, device: dev };
        text = JSON.stringify({ request_id: `init${++n}`, type: 'connect.init', payload: { protocol_rev: spec.rev, role: spec.role, device, capabilities: [] } });
        break;
      }
      case 'proof': {
        const conn = challenge?.connection_id ?? randomUUID();
        const fields = { protocol_rev: initSent?.rev ?? 1, role: initSent?.role ?? 'client', device_id: initSent?.device.device_id ?? DEVICES[0]!.device_id, connection_id: conn, challenge: challenge?.challenge ?? 'x' };
        const signer = spec.mode === 'other-key' ? DEVICES[1 - DEVICES.indexOf(initSent?.device ?? DEVICES[0]!)]! : (initSent?.device ?? DEVICES[0]!);
        let proof = signTranscript(signer, fields);
        if (spec.mode === 'garbage') proof = 'A'.repeat(86);
        const payloadConn = spec.mode === 'wrong-connection' ? randomUUID() : conn;
        text = JSON.stringify({ request_id: `proof${++n}`, type: 'connect.proof', payload: { connection_id: payloadConn, proof } });
        break;
      }
      case 'env':
        text = raw(spec.fields);
        break;
      case 'json':
        text = JSON.stringify(spec.value);
        break;
      case 'text':
        text = spec.text;
        break;
      case 'bytes':
        bytes = spec.bytes;
        binary = spec.binary;
        break;
      case 'deep':
        text = `{"request_id":"deep${++n}","type":"ping","payload":{"a":${'['.repeat(spec.depth)}${']'.repeat(spec.depth)}}}`;
        break;
      case 'proto':
        text = `{"request_id":"proto${++n}","type":${JSON.stringify(spec.type)},"payload":{"x":{${JSON.stringify(spec.key)}:{"polluted":true}}}}`;
        break;
    }
    const data = bytes ?? Buffer.from(text ?? '', 'utf8');

    // What the frame is, judged independently of the session.
    let parsed: unknown;
    let decodable = !binary;
    try {
      parsed = decodable ? JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data)) : undefined;
    } catch {
      decodable = false;
    }
    const isEnvelope = decodable && withinCodecLimits(parsed) && validate(RequestEnvelope, parsed).length === 0;
    const type = isEnvelope ? (parsed as { type: string }).type : null;
    if (isEnvelope) sentIds.add((parsed as { request_id: string }).request_id);
    else if (decodable && parsed !== null && typeof parsed === 'object' && typeof (parsed as { request_id?: unknown }).request_id === 'string') sentIds.add((parsed as { request_id: string }).request_id);

    const wasClosed = session.isClosed;
    const phaseBefore = phase;
    const sentBefore = transport.sent.length;
    const closesBefore = transport.closes.length;
    if (phaseBefore === 'ready' && !wasClosed) framesWhileReady++;

    try {
      session.receive(data, binary);
    } catch (e) {
      return `receive threw: ${(e as Error).stack ?? String(e)}`;
    }

    const newFrames = transport.sent.slice(sentBefore).map(parseSent);
    for (const f of newFrames) {
      if (f.type === 'connect.init' && f.ok === true) {
        phase = 'proof';
        challenge = f.result as { connection_id: string; challenge: string };
      }
      if (f.type === 'connect.proof' && f.ok === true) phase = 'ready';
    }
    if (wasClosed && (transport.sent.length > sentBefore || transport.closes.length > closesBefore)) return 'the session sent or closed again after it was closed';

    if (!wasClosed && phaseBefore !== 'ready') {
      const expected = phaseBefore === 'init' ? 'connect.init' : 'connect.proof';
      if (type === null || !HANDSHAKE_TYPES.has(type) || type !== expected) {
        // Anything but the expected handshake message is a protocol violation: 4003, no ok:true.
        const last = transport.closes[transport.closes.length - 1];
        if (transport.closes.length !== closesBefore + 1 || last?.code !== 4003) return `pre-handshake frame ${JSON.stringify(text ?? [...data])} in phase ${phaseBefore} did not close 4003 (closes: ${JSON.stringify(transport.closes)})`;
        if (newFrames.some((f) => f.ok === true)) return 'a pre-handshake violation got an ok:true response';
      } else {
        // The expected handshake message either succeeds with one ok:true response or closes.
        const oks = newFrames.filter((f) => f.ok === true).length;
        if (!session.isClosed && oks !== 1) return `a ${type} that did not close got ${oks} ok:true responses`;
        if (session.isClosed && oks !== 0) return `a ${type} both succeeded and closed`;
      }
    }
    if (spec.pause) await tick();
  }

  for (let i = 0; i < 50 && pending > 0; i++) await tick();
  await tick();
  if (pending > 0) return `${pending} handler calls never settled`;
  if (problems.length > 0) return problems[0]!;

  // -- properties over everything the session sent -------------------------------------------
  let readyAt = -1;
  for (const [i, text] of transport.sent.entries()) {
    let f: Record<string, unknown>;
    try {
      f = parseSent(text);
    } catch {
      return `sent a frame that is not JSON: ${text}`;
    }
    const isEvent = 'event_id' in f;
    const issues = validate(isEvent ? EventEnvelope : ResponseEnvelope, f);
    if (issues.length > 0) return `sent a frame that fails ${isEvent ? 'EventEnvelope' : 'ResponseEnvelope'}: ${text} ${JSON.stringify(issues)}`;
    if (isEvent) {
      const spec = EVENTS[f.type as keyof typeof EVENTS];
      if (!spec || validate(spec.payload, f.payload).length > 0) return `sent an event whose payload fails its schema: ${text}`;
      continue;
    }
    if (!sentIds.has(f.request_id as string)) return `answered a request_id nobody sent: ${text}`;
    if (f.ok === true) {
      const op = OPERATIONS[f.type as OperationType];
      if (!Object.hasOwn(OPERATIONS, f.type as string)) return `ok:true for a type outside the catalog: ${text}`;
      const rIssues = validate(op.result, f.result);
      if (rIssues.length > 0) return `ok:true ${String(f.type)} result fails its result schema: ${text} ${JSON.stringify(rIssues)}`;
      if (f.type === 'connect.proof') readyAt = i;
      else if (!HANDSHAKE_TYPES.has(f.type as string) && readyAt < 0) return `ok:true for ${String(f.type)} before the handshake completed`;
      else if (HANDSHAKE_TYPES.has(f.type as string) && readyAt >= 0) return `ok:true for ${String(f.type)} after the handshake completed`;
    }
  }
  if (transport.closes.length > 1) return `transport.close called ${transport.closes.length} times`;
  for (const c of transport.closes) {
    if (!PROTOCOL_CLOSE_CODES.has(c.code)) return `closed with ${c.code}, which is not in PROTOCOL.md's table`;
    if (Buffer.byteLength(c.reason, 'utf8') > MAX_CLOSE_REASON_BYTES) return `close reason is ${Buffer.byteLength(c.reason)} bytes: ${c.reason}`;
  }
  if (transport.closes.some((c) => c.code === 1013) && sc.congestAfter === undefined) return 'closed as a slow consumer with an empty send buffer';
  // Progress: while the session stays open, every frame received after the handshake is answered once.
  if (!session.isClosed && readyAt >= 0) {
    const answers = transport.sent.slice(readyAt + 1).filter((s) => 'request_id' in parseSent(s)).length;
    if (answers !== framesWhileReady) return `${framesWhileReady} frames after the handshake but ${answers} responses`;
  }
  if (({} as Record<string, unknown>).polluted !== undefined) return 'Object.prototype was polluted';
  session.closedByTransport();
  return null;
}

// ---- tests ------------------------------------------------------------------------------------

t.test('the fake handler results satisfy every non-handshake operation result schema', async (t) => {
  // Operations the gateway sends to nodes have no handler: a peer sending one is refused.
  const ops = OP_TYPES.filter((op) => !HANDSHAKE_TYPES.has(op) && !('direction' in OPERATIONS[op]));
  t.same(Object.keys(RESULTS).sort(), [...ops].sort(), 'one fake result per catalogued operation a peer may send');
  for (const op of ops) t.same(validate(OPERATIONS[op].result, RESULTS[op as NonHandshakeOp]({ token_id: '0123456789abcdef', tool_id: 'text-utils.word_count' })), [], op);
});

t.test('a valid handshake then a ping is answered (the harness itself works)', async (t) => {
  const sc: Scenario = { prefix: 'full', frames: [{ k: 'env', fields: [['request_id', 'p1'], ['type', 'ping'], ['payload', {}]], pause: false }], scopes: [], roles: ['client'], outcomes: ['ok'], errorCodes: ['TYRUM_ERR_INTERNAL'], congestAfter: undefined };
  t.equal(await run(sc), null);
});

t.test('property: no frame sequence makes the session throw, reject unhandled, send an invalid frame or close off-table', async (t) => {
  const unhandled: unknown[] = [];
  const onRejection = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onRejection);
  t.teardown(() => {
    process.off('unhandledRejection', onRejection);
  });
  const before = Object.getOwnPropertyNames(Object.prototype).sort().join(',');
  await fc.assert(
    fc.asyncProperty(scenario, async (sc) => {
      const problem = await run(sc);
      if (problem !== null) throw new Error(problem);
      if (unhandled.length > 0) throw new Error(`unhandled rejection: ${String(unhandled[0])}`);
    }),
    { numRuns: 400 },
  );
  await tick();
  t.same(unhandled, [], 'no unhandled rejections');
  t.equal(Object.getOwnPropertyNames(Object.prototype).sort().join(','), before, 'Object.prototype unchanged');
});

t.test('before the handshake, every kind of non-handshake frame closes 4003 without an ok:true response', async (t) => {
  const firsts: FrameSpec[] = [
    { k: 'env', fields: [['request_id', 'a'], ['type', 'ping'], ['payload', {}]], pause: false },
    { k: 'env', fields: [['request_id', 'a'], ['type', 'audit.list'], ['payload', {}]], pause: false },
    { k: 'env', fields: [['request_id', 'a'], ['type', 'no.such.op'], ['payload', {}]], pause: false },
    { k: 'proof', mode: 'valid', pause: false },
    { k: 'text', text: 'not json', pause: false },
    { k: 'bytes', bytes: Uint8Array.from([0xff, 0xfe]), binary: false, pause: false },
    { k: 'bytes', bytes: Buffer.from('{"request_id":"a","type":"connect.init","payload":{}}'), binary: true, pause: false },
    { k: 'deep', depth: LIMITS.maxJsonDepth + 1, pause: false },
    { k: 'proto', key: '__proto__', type: 'connect.init', pause: false },
    { k: 'json', value: [], pause: false },
  ];
  for (const first of firsts) {
    const sc: Scenario = { prefix: 'none', frames: [first], scopes: [...SCOPES], roles: ['client'], outcomes: ['ok'], errorCodes: ['TYRUM_ERR_INTERNAL'], congestAfter: undefined };
    t.equal(await run(sc), null, `${first.k} ${JSON.stringify(first).slice(0, 80)}`);
  }
  // And after a successful connect.init, anything but connect.proof is still a violation.
  const afterInit: Scenario = {
    prefix: 'none',
    frames: [{ k: 'init', role: 'client', rev: 1, tamper: 'none', device: 0, pause: false }, { k: 'env', fields: [['request_id', 'b'], ['type', 'ping'], ['payload', {}]], pause: false }],
    scopes: [],
    roles: ['client'],
    outcomes: ['ok'],
    errorCodes: ['TYRUM_ERR_INTERNAL'],
    congestAfter: undefined,
  };
  t.equal(await run(afterInit), null);
});

t.test('the handshake deadline closes an unfinished session with 4002 and spares a finished one', async (t) => {
  const mk = () => {
    const transport = new MemTransport();
    const hooks: SessionHooks = { handle: async () => ({}), audit() {}, authFailed() {}, emit() {}, onDeviceSeen() {}, log() {} };
    const token: AuthenticatedToken = { id: 'fedcba9876543210', label: 'x', scopes: [], roles: ['client'], expires_at: null, kind: 'access', device_id: null };
    return { transport, session: new Session(transport, token, '127.0.0.1', { ...LIMITS, handshakeTimeoutMs: 50 }, hooks, new InflightLimiter(MAX_INFLIGHT)) };
  };
  const idle = mk();
  const done = mk();
  const dev = DEVICES[0]!;
  done.session.receive(Buffer.from(JSON.stringify({ request_id: 'i', type: 'connect.init', payload: { protocol_rev: 1, role: 'client', device: { device_id: dev.device_id, pubkey: dev.pubkey }, capabilities: [] } })), false);
  const init = JSON.parse(done.transport.sent[0]!) as { result: { connection_id: string; challenge: string } };
  const proof = signTranscript(dev, { protocol_rev: 1, role: 'client', device_id: dev.device_id, ...init.result });
  done.session.receive(Buffer.from(JSON.stringify({ request_id: 'p', type: 'connect.proof', payload: { connection_id: init.result.connection_id, proof } })), false);
  t.ok(done.session.isReady);
  await new Promise((r) => setTimeout(r, 150));
  t.same(idle.transport.closes.map((c) => c.code), [4002]);
  t.same(done.transport.closes, [], 'a handshaken session is not timed out');
  done.session.closedByTransport();
});
