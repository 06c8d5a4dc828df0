/**
 * The operation and event catalog: for every request type, its payload and result schemas,
 * the scopes that may call it and the roles that may send it. This one table drives
 * authorization in the gateway, the emitted JSON Schemas and docs/protocol-operations.md
 * (generated, and checked by `npm test`). An operation is listed here only once it works.
 */
import { WorkflowInfo, WorkflowId, WORKFLOW_STATES } from './playbook.js';
import { Type, type TSchema } from '@sinclair/typebox';
import { Strict, Scope, Role, type Scope as ScopeT, type Role as RoleT, IsoTime, TokenId, JsonObject, DeviceId } from './common.js';
import { McpServerName, McpServerSpec } from './mcp.js';
import { ConnectInitPayload, ConnectInitResult, ConnectProofPayload, ConnectProofResult } from './handshake.js';
import { PluginGrant, PluginManifest, RiskFlag, JsonSchemaDoc, PLUGIN_ID_PATTERN, SECRET_NAME_PATTERN, SecretDestination } from './manifest.js';

export interface OperationSpec {
  readonly description: string;
  /** Any one of these scopes allows the call; 'any' means every authenticated peer. */
  readonly scopes: readonly ScopeT[] | 'any';
  readonly roles: readonly RoleT[];
  readonly payload: TSchema;
  readonly result: TSchema;
  /** Handshake messages are handled by the connection state machine, not the op table. */
  readonly handshake?: true;
  /** Sent by the gateway to a node, which answers it; a peer sending it gets unsupported_request. */
  readonly direction?: 'to_node';
}

export const AuditEntry = Strict({
  seq: Type.Integer({ minimum: 1 }),
  ts: IsoTime,
  type: Type.String(),
  actor: JsonObject,
  data: JsonObject,
  prev_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});

export const TokenInfo = Strict({
  token_id: TokenId,
  label: Type.String(),
  scopes: Type.Array(Scope),
  roles: Type.Array(Role),
  created_at: IsoTime,
  expires_at: Type.Union([IsoTime, Type.Null()]),
  revoked_at: Type.Union([IsoTime, Type.Null()]),
  last_used_at: Type.Union([IsoTime, Type.Null()]),
  kind: Type.Union([Type.Literal('access'), Type.Literal('node_enrollment'), Type.Literal('node')], {
    description: "'access' for clients and operators; 'node_enrollment' lets a node ask to be paired; 'node' is a paired node's, bound to device_id.",
  }),
  device_id: Type.Union([DeviceId, Type.Null()]),
});

const Empty = Strict({});

const lit = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const IsoOrNull = Nullable(IsoTime);

export const RUN_STATES = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;
export const STEP_STATES = ['pending', 'running', 'waiting_approval', 'succeeded', 'failed', 'outcome_unknown', 'skipped', 'cancelled'] as const;
export const APPROVAL_STATES = ['pending', 'approved', 'denied', 'expired'] as const;
const Decision = lit(['allow', 'require_approval', 'deny'] as const);

/** A recorded error on a run, step or attempt. */
export const RecordedError = Strict({ code: Type.String(), wire: Type.String(), message: Type.String(), details: Type.Optional(JsonObject) });

export const RunInfo = Strict({
  id: Type.String(),
  kind: lit(['tool', 'workflow'] as const),
  state: lit(RUN_STATES),
  created_by: Type.String(),
  idempotency_key: Nullable(Type.String()),
  request_hash: Type.String(),
  created_at: IsoTime,
  updated_at: IsoTime,
  finished_at: IsoOrNull,
  cancel_requested: Type.Boolean(),
  pause_reason: Nullable(lit(['approval', 'outcome_unknown'] as const)),
  next_attempt_at: IsoTime,
  result: Type.Unknown(),
  error: Nullable(RecordedError),
  lease: Nullable(Strict({ owner: Type.String(), expires_at: IsoTime, fencing_token: Type.Integer() })),
});

export const AttemptInfo = Strict({
  n: Type.Integer({ minimum: 1 }),
  state: lit(['started', 'succeeded', 'failed', 'interrupted'] as const),
  owner: Type.String(),
  fencing_token: Type.Integer(),
  started_at: IsoTime,
  finished_at: IsoOrNull,
  duration_ms: Nullable(Type.Number()),
  usage: Type.Unknown(),
  result: Type.Unknown(),
  error: Nullable(RecordedError),
  evidence: Type.Unknown({ description: 'What the executor reported beside the output (a node: file digests before and after a write, exit code, durations); null when nothing.' }),
});

export const StepInfo = Strict({
  idx: Type.Integer({ minimum: 0 }),
  tool_id: Type.String(),
  args: Type.Unknown(),
  args_hash: Type.String(),
  idempotency_key: Nullable(Type.String()),
  state: lit(STEP_STATES),
  idempotent: Type.Boolean(),
  max_attempts: Nullable(Type.Integer()),
  timeout_ms: Type.Integer(),
  postcondition: Type.Unknown(),
  policy: Nullable(Strict({ decision: Decision, enforced: Type.Boolean(), snapshot_id: Type.String(), detail: Type.Unknown() })),
  approval_id: Nullable(Type.String()),
  definition_hash: Nullable(Type.String()),
  plugin_digest: Nullable(Type.String()),
  result: Type.Unknown(),
  error: Nullable(RecordedError),
  duration_ms: Nullable(Type.Number()),
  usage: Type.Unknown(),
  started_at: IsoOrNull,
  finished_at: IsoOrNull,
  attempts: Type.Array(AttemptInfo),
});

export const RunDetail = Strict({ run: RunInfo, steps: Type.Array(StepInfo) });

const PairingId = Type.String({ pattern: '^pair_[0-9a-f]{16}$' });
const PairingState = Type.Union(['awaiting_human', 'approved', 'denied', 'revoked'].map((x) => Type.Literal(x)));
const TrustLevel = Type.Union([Type.Literal('local'), Type.Literal('remote')]);
const NodeName = Type.String({ pattern: '^[a-z][a-z0-9-]{0,30}[a-z0-9]$' });
const CapabilityRef = Strict({ id: Type.String({ minLength: 1, maxLength: 128 }), version: Type.String({ minLength: 1, maxLength: 32 }), definition_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }) });
export const PairingInfo = Strict({
  pairing_id: PairingId,
  device_id: DeviceId,
  state: PairingState,
  trust_level: Type.Union([TrustLevel, Type.Null()]),
  node_name: Type.Union([NodeName, Type.Null()]),
  label: Type.Union([Type.String(), Type.Null()]),
  platform: Type.Union([Type.String(), Type.Null()]),
  version: Type.Union([Type.String(), Type.Null()]),
  remote_address: Type.String(),
  advertised: Type.Array(CapabilityRef, { description: 'What the node advertised at its latest connection.' }),
  capability_allowlist: Type.Array(Strict({ id: Type.String(), version: Type.String(), definition_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }), read_only: Type.Boolean() })),
  requested_at: IsoTime,
  resolved_at: Type.Union([IsoTime, Type.Null()]),
  resolved_by: Type.Union([JsonObject, Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
  credential_delivered_at: Type.Union([IsoTime, Type.Null()]),
  connected: Type.Boolean({ description: 'A connection of this node is open to this gateway now.' }),
});

const ConversationId = Type.String({ pattern: '^conv_[0-9a-f]{16}$' });
const MessageId = Type.String({ pattern: '^msg_[0-9a-f]{16}$' });
const TurnId = Type.String({ pattern: '^turn_[0-9a-f]{16}$' });
export const TURN_STATES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export const MESSAGE_ROLES = ['user', 'assistant', 'tool', 'notice'] as const;
export const TokenUsageInfo = Strict({ prompt_tokens: Type.Integer({ minimum: 0 }), completion_tokens: Type.Integer({ minimum: 0 }), total_tokens: Type.Integer({ minimum: 0 }) });
export const ConversationInfo = Strict({
  conversation_id: ConversationId,
  channel: Type.String({ description: '"operator" for a conversation an operator client created, else the channel instance ("<plugin>/<name>").' }),
  account: Type.String({ description: 'The chat id on the channel, or the creating token for an operator conversation.' }),
  thread: Type.Union([Type.String(), Type.Null()]),
  title: Type.Union([Type.String(), Type.Null()]),
  created_by: Type.String(),
  created_at: IsoTime,
  updated_at: IsoTime,
});
export const MessageInfo = Strict({
  message_id: MessageId,
  seq: Type.Integer({ minimum: 1 }),
  role: lit(MESSAGE_ROLES),
  content: Type.Union([Type.String(), Type.Null()]),
  tool_calls: Type.Union([Type.Array(Strict({ id: Type.String(), tool_id: Type.Union([Type.String(), Type.Null()]), arguments: Type.String() })), Type.Null()]),
  tool_call_id: Type.Union([Type.String(), Type.Null()]),
  run_id: Type.Union([Type.String(), Type.Null()]),
  turn_id: Type.Union([TurnId, Type.Null()]),
  provenance: JsonObject,
  usage: Type.Union([TokenUsageInfo, Type.Null()]),
  created_at: IsoTime,
});
export const TurnInfo = Strict({
  turn_id: TurnId,
  state: lit(TURN_STATES),
  waiting: Type.Union([Type.String({ description: '"approval" while a tool call waits for an operator.' }), Type.Null()]),
  steps: Type.Integer({ minimum: 0, description: 'Model calls made.' }),
  usage: TokenUsageInfo,
  error: Type.Union([RecordedError, Type.Null()]),
  created_at: IsoTime,
  started_at: Type.Union([IsoTime, Type.Null()]),
  finished_at: Type.Union([IsoTime, Type.Null()]),
});
export const DeliveryInfo = Strict({
  delivery_id: Type.String({ pattern: '^dlv_[0-9a-f]{16}$' }),
  message_id: MessageId,
  state: lit(['pending', 'delivered', 'failed'] as const),
  parts_sent: Type.Integer({ minimum: 0 }),
  attempts: Type.Integer({ minimum: 0 }),
  receipts: Type.Array(Type.String()),
  last_error: Type.Union([Type.String(), Type.Null()]),
  created_at: IsoTime,
  finished_at: Type.Union([IsoTime, Type.Null()]),
});

const ChannelName = Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}[a-z0-9]/[a-z][a-z0-9-]{0,30}[a-z0-9]$', description: '<plugin>/<instance>' });
export const ChannelInfo = Strict({
  channel: ChannelName,
  plugin_id: Type.String(),
  channel_id: Type.String({ description: "The plugin's channel contribution." }),
  api_base: Type.String(),
  dm_policy: lit(['pairing', 'allowlist', 'open'] as const),
  verify_secret: Type.String({ description: 'The handle name, never a value.' }),
  credential_secret: Type.Union([Type.String(), Type.Null()]),
  webhook_path: Type.String(),
  plugin_enabled: Type.Boolean(),
  created_at: IsoTime,
});
export const ChannelSenderInfo = Strict({
  sender_id: Type.String(),
  state: lit(['allowed', 'pending', 'denied'] as const),
  name: Type.Union([Type.String(), Type.Null()]),
  code: Type.Union([Type.String({ description: 'The pairing code sent to a waiting sender (while valid).' }), Type.Null()]),
  code_expires_at: Type.Union([IsoTime, Type.Null()]),
  updated_at: IsoTime,
});

export const PresenceEntry = Strict({
  device_id: DeviceId,
  role: Role,
  label: Type.Union([Type.String(), Type.Null()]),
  mode: Type.Union([Type.String(), Type.Null()]),
  platform: Type.Union([Type.String(), Type.Null()]),
  version: Type.Union([Type.String(), Type.Null()]),
  connected: Type.Boolean(),
  connections: Type.Integer({ minimum: 0 }),
  connected_since: IsoTime,
  last_seen_at: IsoTime,
  remote_address: Type.String(),
});

export const ApprovalInfo = Strict({
  id: Type.String(),
  run_id: Nullable(Type.String()),
  step_idx: Nullable(Type.Integer()),
  tool_id: Type.String(),
  args: Type.Unknown(),
  args_hash: Type.String(),
  definition_hash: Type.String(),
  plugin_digest: Type.String(),
  requested_by: Type.String(),
  state: lit(APPROVAL_STATES),
  mode: Nullable(lit(['once', 'always'] as const)),
  reason: Nullable(Type.String()),
  created_at: IsoTime,
  expires_at: IsoTime,
  resolved_at: IsoOrNull,
  resolved_by: Nullable(JsonObject),
  consumed_at: IsoOrNull,
});

const Postcondition = Strict({
  path: Type.String({ maxLength: 1024, description: 'JSON pointer into the output, e.g. /status.' }),
  equals: Type.Optional(Type.Unknown()),
  exists: Type.Optional(Type.Boolean()),
  matches: Type.Optional(Type.String({ maxLength: 256 })),
});

const StepRequest = Strict({
  tool_id: Type.String({ minLength: 1, maxLength: 200 }),
  args: JsonObject,
  idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
  timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 300_000 })),
  postcondition: Type.Optional(Postcondition),
});

const WaitMs = Type.Optional(Type.Integer({ minimum: 0, maximum: 120_000, description: 'How long to wait for the run to finish or pause before answering (default 10000).' }));

const PolicyEvidence = Strict({ decision: Decision, enforced: Type.Boolean(), snapshot_id: Type.String() });

const PluginId = Type.String({ pattern: PLUGIN_ID_PATTERN });
/** `<plugin id>.<tool name>` */
export const ToolId = Type.String({
  pattern: '^([a-z][a-z0-9-]{0,62}[a-z0-9]\\.[a-z][a-z0-9_]{0,62}|mcp\\.[a-z][a-z0-9_-]{0,47}\\.[A-Za-z0-9_.-]{1,128}|node\\.[a-z][a-z0-9_]{0,31}(\\.[a-z][a-z0-9_]{0,31}){1,4}(@[a-z0-9][a-z0-9_-]{0,62})?)$',
  description: '<plugin id>.<tool name>, mcp.<server>.<MCP tool name> for a tool of an approved MCP server, or node.<capability>[@<node name or device id>] for a capability of an approved node',
});
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

const EffectiveEgress = Strict({ host: Type.String(), port: Type.Integer(), scheme: Type.Union([Type.Literal('https'), Type.Literal('http')]), methods: Type.Array(Type.String()) });
export const EffectiveRights = Strict({
  egress: Type.Array(EffectiveEgress),
  secrets: Type.Array(Strict({ name: Type.String(), destinations: Type.Array(Type.String()) })),
  kv: Type.Union([Strict({ quota_bytes: Type.Integer() }), Type.Null()]),
  memory: Strict({ max_pages: Type.Integer() }),
  time: Strict({ timeout_ms: Type.Integer() }),
  accepted_risks: Type.Array(RiskFlag),
  missing_risks: Type.Array(RiskFlag),
});

export const PluginInfo = Strict({
  id: PluginId,
  version: Type.String(),
  name: Type.String(),
  description: Type.String(),
  publisher: Type.String(),
  state: Type.Union([Type.Literal('disabled'), Type.Literal('enabled')]),
  manifest_sha256: Sha256,
  wasm_sha256: Sha256,
  risk: Type.Array(RiskFlag),
  tools: Type.Array(Type.String()),
  grant: Type.Union([PluginGrant, Type.Null()]),
  effective: EffectiveRights,
  /** Why the plugin cannot be enabled as things stand (empty when it can). */
  blockers: Type.Array(Type.String()),
  /** An upgrade's permission diff waiting for the operator's new grant (cleared by plugin.grant; blocks enabling meanwhile). */
  pending_upgrade: Type.Union([
    Strict({
      from_version: Type.String({ description: 'the version the current grant was made for (the diff is what to_version asks for beyond it, recomputed on every version change; for a grant made before schema v17, which did not keep what it covered: the version before the first upgrade that asked for more, the diff summing the upgrades since)' }),
      to_version: Type.String(),
      diff: Type.Array(Strict({ kind: Type.Union([Type.Literal('egress'), Type.Literal('secret'), Type.Literal('kv'), Type.Literal('memory'), Type.Literal('time'), Type.Literal('risk')]), change: Type.Union([Type.Literal('added'), Type.Literal('widened')]), detail: Type.String() })),
      since: IsoTime,
    }),
    Type.Null(),
  ]),
  installed_at: IsoTime,
  updated_at: IsoTime,
});

export const ToolInfo = Strict({
  tool_id: ToolId,
  plugin_id: PluginId,
  plugin_version: Type.String(),
  description: Type.String(),
  effect: Type.Union([Type.Literal('read_only'), Type.Literal('state_changing')]),
  input_schema: JsonSchemaDoc,
  output_schema: JsonSchemaDoc,
  definition_hash: Sha256,
  plugin_digest: Sha256,
});

export const CallUsage = Strict({
  wall_ms: Type.Number({ minimum: 0 }),
  host_calls: Type.Integer({ minimum: 0 }),
  alloc_bytes: Type.Integer({ minimum: 0 }),
  egress_bytes: Type.Integer({ minimum: 0 }),
  output_bytes: Type.Integer({ minimum: 0 }),
  mem_pages_peak: Type.Integer({ minimum: 0 }),
  log_lines: Type.Integer({ minimum: 0 }),
});

export const SecretInfo = Strict({
  name: Type.String({ pattern: SECRET_NAME_PATTERN }),
  version: Type.Integer({ minimum: 1 }),
  destinations: Type.Array(SecretDestination),
  created_at: IsoTime,
  rotated_at: IsoTime,
});

const ArtifactId = Type.String({ pattern: '^sha256:[0-9a-f]{64}$', description: "'sha256:' + the lowercase hex digest of the bytes (content-addressed)." });
const RunIdRef = Type.String({ minLength: 1, maxLength: 64 });
export const ArtifactAttachmentInfo = Strict({
  run_id: Type.String(),
  step_idx: Nullable(Type.Integer({ minimum: 0 })),
  attempt: Nullable(Type.Integer({ minimum: 1 })),
  kind: Type.Literal('evidence'),
  name: Nullable(Type.String({ description: 'The name given when it was attached (sanitised).' })),
  media_type: Type.String({ description: 'The media type given when it was attached.' }),
  attached_at: IsoTime,
  attached_by: Type.String(),
});
export const ArtifactInfo = Strict({
  artifact_id: ArtifactId,
  size: Type.Integer({ minimum: 0 }),
  media_type: Type.String({ description: 'Served as Content-Type by GET /artifacts/<id> (the first put of this content).' }),
  name: Nullable(Type.String()),
  created_at: IsoTime,
  created_by: Type.String(),
  download_path: Type.String({ description: '/artifacts/<artifact_id>: GET with Authorization: Bearer and operator.read.' }),
});
const McpToolStatus = Type.Union([Type.Literal('approved'), Type.Literal('pending'), Type.Literal('changed'), Type.Literal('refused'), Type.Literal('removed')]);
const McpServerInfo = Strict({
  name: McpServerName,
  origin: Type.String({ description: '"operator", or the plugin that contributes it.' }),
  description: Type.String(),
  state: Type.Union([Type.Literal('quarantined'), Type.Literal('approved'), Type.Literal('disabled')]),
  transport: Type.String(),
  spec: McpServerSpec,
  spec_digest: Type.String(),
  created_at: IsoTime,
  approved_at: Type.Union([IsoTime, Type.Null()]),
  approved_by: Type.Union([Type.String(), Type.Null()]),
  health: Type.Union([JsonObject, Type.Null()]),
  tools: Strict({ approved: Type.Integer(), pending: Type.Integer(), changed: Type.Integer(), refused: Type.Integer(), removed: Type.Integer() }),
});
const McpToolDiffInfo = Strict({
  tool_id: Type.String(),
  name: Type.String(),
  status: McpToolStatus,
  refused: Type.Union([Type.String(), Type.Null()]),
  approved: Type.Union([JsonObject, Type.Null()], { description: 'The approved definition; null if never approved.' }),
  observed: Type.Union([JsonObject, Type.Null()], { description: 'The definition the server lists now; null if it stopped listing it.' }),
  fields: Type.Array(Strict({ field: Type.String(), approved: Type.Unknown(), observed: Type.Unknown() })),
});

export const OPERATIONS = {
  'connect.init': {
    description: 'First frame of every connection: protocol revision, role, device identity, capabilities.',
    scopes: 'any',
    roles: ['client', 'node'],
    payload: ConnectInitPayload,
    result: ConnectInitResult,
    handshake: true,
  },
  'connect.proof': {
    description: 'Proves possession of the device key by signing the handshake transcript.',
    scopes: 'any',
    roles: ['client', 'node'],
    payload: ConnectProofPayload,
    result: ConnectProofResult,
    handshake: true,
  },
  ping: {
    description: 'Liveness check; answers with the server time.',
    scopes: 'any',
    roles: ['client', 'node'],
    payload: Empty,
    result: Strict({ pong: Type.Literal(true), server_time: IsoTime }),
  },
  'audit.list': {
    description: 'Pages through the hash-chained audit log in sequence order.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({
      after_seq: Type.Optional(Type.Integer({ minimum: 0 })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
      type: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    }),
    result: Strict({ entries: Type.Array(AuditEntry), next_after_seq: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]) }),
  },
  'audit.verify': {
    description: 'Verifies the audit chain and its signed checkpoint; names the first bad entry.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({
      ok: Type.Boolean(),
      entries: Type.Integer({ minimum: 0 }),
      head_hash: Type.Union([Type.String(), Type.Null()]),
      checkpoint_seq: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
      first_bad_seq: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
      reason: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  'doctor.run': {
    description: "Runs the checks of `tyrum doctor` that the gateway can make on its own home: home permissions, config.json, database pragmas and SQLite's quick_check, the gateway key file, the audit chain and its signed checkpoint, plus installed plugins awaiting review. quick_check and the chain walk run on a worker thread with its own read-only connection (committed data only), so the gateway keeps serving meanwhile. Changes nothing. Admin scope: quick_check and the chain walk read the whole database; one check runs at a time, and a call within 60 s of the last report returns that report (see checked_at).",
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Empty,
    result: Strict({
      ok: Type.Boolean({ description: 'no check failed (warnings allowed)' }),
      checks: Type.Array(Strict({ name: Type.String(), status: Type.Union([Type.Literal('ok'), Type.Literal('warn'), Type.Literal('fail')]), detail: Type.String() })),
      checked_at: IsoTime,
    }),
  },
  'token.create': {
    description: 'Mints an access token, recorded as a child of the caller\'s token: never with a scope or role the caller does not hold, nor expiring later than the caller\'s token (a caller with an expiry must give ttl_seconds). The secret is returned once.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({
      scopes: Type.Array(Scope, { minItems: 1, maxItems: 5, uniqueItems: true }),
      roles: Type.Optional(Type.Array(Role, { minItems: 1, maxItems: 2, uniqueItems: true })),
      label: Type.Optional(Type.String({ maxLength: 128 })),
      ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 24 * 3600 })),
    }),
    result: Strict({ token: Type.String(), info: TokenInfo }),
  },
  'token.list': {
    description: 'Lists tokens (metadata only; secrets are never stored).',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ tokens: Type.Array(TokenInfo) }),
  },
  'token.revoke': {
    description: 'Revokes a token and every token minted from it, directly or not (each audited); their open connections are closed with 4001 within a second. A token also stops working when the token that minted it expires.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ token_id: TokenId }),
    result: Strict({ token_id: TokenId, revoked_at: IsoTime }),
  },
  'plugin.list': {
    description: 'Installed plugins with state, requested vs granted vs effective capabilities, digests, what blocks enabling, and the permission diff of an upgrade that asks for more than was granted (pending_upgrade, until the next plugin.grant). A tenant other than the default sees each plugin\'s public facts and whether the host enabled it, with its own grant, effective rights and blockers (never the host\'s grant or config).',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ plugins: Type.Array(PluginInfo) }),
  },
  'plugin.get': {
    description: 'One installed plugin, with its manifest (for a tenant other than the default: as plugin.list shows it to that tenant).',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ plugin_id: PluginId }),
    result: Strict({ plugin: PluginInfo, manifest: PluginManifest }),
  },
  'plugin.enable': {
    description: 'Enables a plugin: its granted tools become callable. Refused while a declared risk is not accepted or its config is invalid.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ plugin_id: PluginId }),
    result: Strict({ plugin: PluginInfo }),
  },
  'plugin.disable': {
    description: 'Disables a plugin: its tools disappear and its sandbox is unloaded.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ plugin_id: PluginId }),
    result: Strict({ plugin: PluginInfo }),
  },
  'plugin.grant': {
    description: 'The operator\'s half of the two-key model: replaces the plugin\'s grant (effective rights = request ∩ grant). `all_requested` grants every requested capability (risks still need accept_risks). A tenant other than the default replaces its own grant (its calls of the plugin, once the host enabled it, run under it); the host\'s grant and the plugin\'s state are untouched.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ plugin_id: PluginId, grant: Type.Optional(PluginGrant), all_requested: Type.Optional(Type.Boolean()), accept_risks: Type.Optional(Type.Array(RiskFlag, { uniqueItems: true })) }),
    result: Strict({ plugin: PluginInfo }),
  },
  'plugin.revoke': {
    description: 'Withdraws the plugin\'s grant and disables it. A tenant other than the default withdraws its own grant only.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ plugin_id: PluginId }),
    result: Strict({ plugin: PluginInfo }),
  },
  'tool.list': {
    description: 'Tools of enabled plugins visible to the caller, with their definition hashes.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ tools: Type.Array(ToolInfo) }),
  },
  'tool.invoke': {
    description:
      'Calls a tool as a durable one-step run: policy decides (deny, require approval, allow), the tool runs in its sandbox with its schemas checked, and the call is audited. Answers with the run as soon as it finishes, pauses (e.g. for approval) or wait_ms passes.',
    scopes: ['operator.write'],
    roles: ['client'],
    payload: Strict({
      tool_id: ToolId,
      args: JsonObject,
      idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Repeating a key returns the original run; the same key with other arguments is a conflict.' })),
      wait_ms: WaitMs,
    }),
    result: Strict({
      run_id: Type.String(),
      state: lit(RUN_STATES),
      tool_id: ToolId,
      /** The tool's output when the run succeeded, else null. */
      output: Type.Unknown(),
      error: Nullable(RecordedError),
      approval_id: Nullable(Type.String()),
      policy: Nullable(PolicyEvidence),
      definition_hash: Nullable(Sha256),
      plugin_digest: Nullable(Sha256),
      duration_ms: Nullable(Type.Number({ minimum: 0 })),
      usage: Nullable(CallUsage),
    }),
  },
  'workflow.start': {
    description: 'Starts a multi-step run: steps run in order, each through the same policy, approval and sandbox path as tool.invoke.',
    scopes: ['operator.write'],
    roles: ['client'],
    payload: Type.Union([
      Strict({ steps: Type.Array(StepRequest, { minItems: 1, maxItems: 64 }), idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })), wait_ms: WaitMs }, { title: 'steps', description: 'A fixed list of tool calls: one engine run with several steps (result: the run).' }),
      Strict(
        {
          playbook: { ...JsonObject, description: 'A playbook document (schemas/json/playbook.json), e.g. a parsed YAML file.' },
          inputs: Type.Optional(JsonObject),
          idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
          wait_ms: WaitMs,
        },
        { title: 'playbook', description: 'A playbook and its inputs: a workflow whose steps (tool, node, agent turn, approval gate) run in order (result: {workflow}).' },
      ),
    ]),
    result: Type.Union([RunDetail, Strict({ workflow: WorkflowInfo })]),
  },
  'workflow.get': {
    description: 'A workflow (playbook run): its steps, outputs, the gate it waits at and, for a caller with operator.approvals, the resume token.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ workflow_id: WorkflowId }),
    result: Strict({ workflow: WorkflowInfo }),
  },
  'workflow.list': {
    description: 'Workflows, newest first.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ state: Type.Optional(lit(WORKFLOW_STATES)), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })), before: Type.Optional(Type.String({ format: 'date-time', description: 'created_at of the last workflow of the previous page.' })) }),
    result: Strict({ workflows: Type.Array(WorkflowInfo) }),
  },
  'workflow.resume': {
    description: "Decides a paused workflow's approval gate with its resume token (single use, expiring, bound to that workflow and step): approve continues the workflow, deny fails it.",
    scopes: ['operator.approvals'],
    roles: ['client'],
    payload: Strict({ token: Type.String({ minLength: 1, maxLength: 256 }), decision: Type.Optional(lit(['approve', 'deny'] as const)), reason: Type.Optional(Type.String({ maxLength: 1000 })), wait_ms: WaitMs }),
    result: Strict({ workflow: WorkflowInfo }),
  },
  'workflow.cancel': {
    description: 'Cancels a running or paused workflow, and the run its current step started.',
    scopes: ['operator.write'],
    roles: ['client'],
    payload: Strict({ workflow_id: WorkflowId }),
    result: Strict({ workflow: WorkflowInfo }),
  },
  'run.get': {
    description: 'A run with its steps, attempts and evidence (policy decision and snapshot, approval, redacted results, durations, budget use).',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ run_id: Type.String({ minLength: 1, maxLength: 64 }) }),
    result: RunDetail,
  },
  'run.list': {
    description: 'Runs, newest first.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ state: Type.Optional(lit(RUN_STATES)), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })), after: Type.Optional(Type.String({ maxLength: 64 })) }),
    result: Strict({ runs: Type.Array(RunInfo) }),
  },
  'run.cancel': {
    description: 'Records the intent to cancel; the run stops at the next safe point.',
    scopes: ['operator.write'],
    roles: ['client'],
    payload: Strict({ run_id: Type.String({ minLength: 1, maxLength: 64 }) }),
    result: Strict({ run: RunInfo }),
  },
  'run.resolve': {
    description: 'An operator\'s decision on a step whose outcome is unknown after a crash (it may or may not have had its effect): retry, skip or fail it.',
    scopes: ['operator.approvals'],
    roles: ['client'],
    payload: Strict({ run_id: Type.String({ minLength: 1, maxLength: 64 }), step_idx: Type.Integer({ minimum: 0 }), action: lit(['retry', 'skip', 'fail'] as const) }),
    result: Strict({ run: RunInfo }),
  },
  'approval.list': {
    description: 'Approvals, newest first; pending ones are what waits for a human.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ state: Type.Optional(lit(APPROVAL_STATES)), run_id: Type.Optional(Type.String({ maxLength: 64 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }),
    result: Strict({ approvals: Type.Array(ApprovalInfo) }),
  },
  'approval.resolve': {
    description: 'Approves or denies a pending approval; exactly one resolution wins (a racing one gets conflict), an expired one is invalid_state. mode "always" also creates a narrow policy override for this tool (never beats a deny); by a tenant other than the default, an override of that tenant\'s, for its own calls only.',
    scopes: ['operator.approvals'],
    roles: ['client'],
    payload: Strict({
      approval_id: Type.String({ minLength: 1, maxLength: 64 }),
      decision: lit(['approved', 'denied'] as const),
      reason: Type.Optional(Type.String({ maxLength: 1000 })),
      mode: Type.Optional(lit(['once', 'always'] as const)),
      override_ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 24 * 3600, description: 'With mode "always": the override expires after this long (default: no expiry).' })),
    }),
    result: Strict({ approval: ApprovalInfo, override_id: Nullable(Type.String()) }),
  },
  'pairing.list': {
    description: 'Node pairings, newest first: nodes waiting for an operator, approved ones with their allowlists, and denied or revoked ones.',
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({ state: Type.Optional(PairingState), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }),
    result: Strict({ pairings: Type.Array(PairingInfo) }),
  },
  'pairing.approve': {
    description: 'Approve a waiting node (or change an approved one): its trust level and the capabilities it may run, each pinned to the definition it advertised. The gateway then delivers the node its node-scoped token, once.',
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({
      pairing_id: PairingId,
      trust_level: TrustLevel,
      capability_allowlist: Type.Array(Strict({ id: Type.String({ minLength: 1, maxLength: 128 }), version: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })) }), { maxItems: 256 }),
      read_only: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 256 })),
      node_name: Type.Optional(NodeName),
      reason: Type.Optional(Type.String({ maxLength: 1000 })),
    }),
    result: Strict({ pairing: PairingInfo }),
  },
  'pairing.deny': {
    description: 'Refuse a waiting node; its connections are closed (4001).',
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({ pairing_id: PairingId, reason: Type.Optional(Type.String({ maxLength: 1000 })) }),
    result: Strict({ pairing: PairingInfo }),
  },
  'pairing.revoke': {
    description: "Withdraw an approved node's pairing: its node token is revoked and its connections closed within a second. A later connection starts a new pairing with an empty allowlist.",
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({ pairing_id: PairingId, reason: Type.Optional(Type.String({ maxLength: 1000 })) }),
    result: Strict({ pairing: PairingInfo }),
  },
  'mcp.list': {
    description: 'MCP servers (declared by the operator or contributed by plugins): state (quarantined, approved, disabled), transport, spec, health, and how many of their tools are approved, pending, changed, refused or removed.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ servers: Type.Array(McpServerInfo) }),
  },
  'mcp.diff': {
    description: "An MCP server's tools that need review: new (pending) and changed tools with the approved and observed definitions and the fields that differ (all tools with all: true). Hints are the server's own, untrusted.",
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ name: McpServerName, all: Type.Optional(Type.Boolean()) }),
    result: Strict({ server: McpServerInfo, tools: Type.Array(McpToolDiffInfo) }),
  },
  'mcp.approve': {
    description: "Approves an MCP server's tools (all new and changed ones, or those named), pinning each to the definition the server lists now; read_only names tools approved as read-only (otherwise state_changing). Approving the server's first tools also takes it out of quarantine.",
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ name: McpServerName, tools: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 256 })), read_only: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 256 })) }),
    result: Strict({
      approved: Type.Array(Strict({ tool_id: Type.String(), definition_hash: Type.String(), effect: Type.String() })),
      skipped: Type.Array(Strict({ name: Type.String(), reason: Type.String() })),
    }),
  },
  'node.bootstrap': {
    description:
      'A short-lived single-use node bootstrap token (role node, no scope, hashed at rest): the first device that connects with it asks to be paired and claims it (any other device is refused), and it is revoked once that device has stored its node token. For embedded nodes such as the operator UI\'s browser node, and the tyrum://bootstrap payload of mobile hosts. The secret is returned once.',
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({
      ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 900, description: 'Lifetime; default 300 (5 minutes).' })),
      label: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    }),
    result: Strict({ token: Type.String(), token_id: Type.String(), expires_at: IsoTime }),
  },
  'presence.list': {
    description: 'Who is connected to this gateway now, clients and nodes: device, role, label, mode, platform, connected since, last seen.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ entries: Type.Array(PresenceEntry) }),
  },
  'capability.ready': {
    description: "A node reports which of its capabilities are ready now (local permissions or consent can block one); a full snapshot that replaces the previous one for this connection. The gateway dispatches only what is paired, allowed and ready.",
    scopes: 'any',
    roles: ['node'],
    payload: Strict({
      capabilities: Type.Array(Strict({ id: Type.String({ minLength: 1, maxLength: 128 }), version: Type.String({ minLength: 1, maxLength: 32 }), ready: Type.Boolean(), reason: Type.Optional(Type.String({ maxLength: 200 })) }), { maxItems: 256 }),
    }),
    result: Strict({
      pairing_id: Type.Union([PairingId, Type.Null()]),
      state: Type.Union([PairingState, Type.Null()]),
      dispatchable: Type.Array(Type.String(), { description: 'Capability ids that are allowed and ready: what the gateway may send this node now.' }),
    }),
  },
  'attempt.evidence': {
    description: 'A node streams evidence for a dispatch it is running (task.execute); kept with the attempt, also when the dispatch is cut off.',
    scopes: 'any',
    roles: ['node'],
    payload: Strict({ dispatch_id: Type.String({ pattern: '^dsp_[0-9a-f]{24}$' }), seq: Type.Integer({ minimum: 0, maximum: 1023 }), evidence: JsonObject }),
    result: Strict({ accepted: Type.Literal(true) }),
  },
  'pairing.credential': {
    description: 'Sent by the gateway to a node whose pairing was approved: its node-scoped token, delivered once. The node stores it, answers {stored: true} and reconnects with it.',
    scopes: 'any',
    roles: ['node'],
    direction: 'to_node',
    payload: Strict({ pairing_id: PairingId, token: Type.String(), token_id: TokenId, device_id: DeviceId, node_name: NodeName, trust_level: TrustLevel, capability_allowlist: Type.Array(Strict({ id: Type.String(), version: Type.String() })) }),
    result: Strict({ stored: Type.Literal(true) }),
  },
  'policy.get': {
    description:
      "The active policy bundle, its content-addressed snapshot id, recent history and overrides. For a tenant other than the default: the tenant's own bundle (null when it has none), history and overrides, and host_snapshot_id, the host's bundle, which applies as well (docs/tenancy.md).",
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({
      snapshot_id: Type.Union([Type.String(), Type.Null()], { description: "Null only for a tenant other than the default that has no bundle of its own." }),
      bundle: Type.Union([JsonObject, Type.Null()]),
      history: Type.Array(Strict({ seq: Type.Integer(), snapshot_id: Type.String(), activated_at: IsoTime, activated_by: Type.String() })),
      overrides: Type.Array(JsonObject),
      host_snapshot_id: Type.Optional(Type.String({ description: "A tenant other than the default: the host's active snapshot, the ceiling of the tenant's decisions (its content is the host's)." })),
    }),
  },
  'policy.set': {
    description: "Activates a new policy bundle; every change is a new snapshot (the same content keeps its id). A tenant other than the default sets its own bundle, which can only tighten the host's (no pairing rules).",
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ bundle: JsonObject }),
    result: Strict({ snapshot_id: Type.String(), changed: Type.Boolean() }),
  },
  'policy.explain': {
    description: "What the active policy decides for a tool call, and which rules made the decision. For a tenant other than the default: the decision for the tenant's call, the stricter of the host's and the tenant's own bundle (with the tenant's overrides); tenant says what the tenant's part decided.",
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ tool_id: Type.String({ minLength: 1, maxLength: 200 }), args: Type.Optional(JsonObject) }),
    result: Strict({ decision: Decision, enforced: Decision, snapshot_id: Type.String(), source: Type.String(), matched: Type.Array(JsonObject), text: Type.String(), tenant: Type.Optional(JsonObject) }),
  },
  'policy.override.revoke': {
    description: 'Revokes a policy override (e.g. one created by an "always" approval). A tenant other than the default revokes its own overrides only.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ override_id: Type.String({ minLength: 1, maxLength: 64 }) }),
    result: Strict({ override: JsonObject, changed: Type.Boolean() }),
  },
  'event.list': {
    description: 'Durable events (run, step, approval and pairing transitions) after a cursor, for catching up after a reconnect with no gaps.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ after: Type.Optional(Type.Integer({ minimum: 0 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
    result: Strict({
      events: Type.Array(Strict({ cursor: Type.Integer({ minimum: 1 }), event_id: Type.String(), type: Type.String(), occurred_at: IsoTime, payload: JsonObject })),
      next_after: Type.Integer({ minimum: 0 }),
    }),
  },
  'conversation.create': {
    description: 'Starts a conversation with the agent for this operator client.',
    scopes: ['operator.write'],
    roles: ['client'],
    payload: Strict({ title: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }),
    result: Strict({ conversation: ConversationInfo }),
  },
  'conversation.list': {
    description: 'Conversations, most recently active first (operator and channel ones).',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ channel: Type.Optional(Type.String({ maxLength: 200 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })), before: Type.Optional(IsoTime) }),
    result: Strict({ conversations: Type.Array(ConversationInfo) }),
  },
  'conversation.get': {
    description: "A conversation with its latest messages (oldest first), its latest turns and, for a channel conversation, its reply deliveries.",
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ conversation_id: ConversationId, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }),
    result: Strict({ conversation: ConversationInfo, messages: Type.Array(MessageInfo), turns: Type.Array(TurnInfo), deliveries: Type.Array(DeliveryInfo) }),
  },
  'conversation.send': {
    description: 'A message from the operator into a conversation. One turn runs at a time; a message sent during a turn waits and the next turn takes every waiting message. Answers at once with the stored message and the turn that will take it; follow message.* and turn.* events.',
    scopes: ['operator.write'],
    roles: ['client'],
    payload: Strict({
      conversation_id: ConversationId,
      text: Type.String({ minLength: 1, maxLength: 32_768 }),
      idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Repeating a key in this conversation returns the first message instead of sending again.' })),
    }),
    result: Strict({ message: MessageInfo, turn_id: TurnId, existing: Type.Boolean() }),
  },
  'channel.list': {
    description: 'Chat-channel instances (bots) with their webhook paths; secret handle names, never values.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ channels: Type.Array(ChannelInfo) }),
  },
  'channel.senders': {
    description: "Who may talk to the agent through a channel: allowed and denied senders, and unknown ones waiting with the pairing code they were sent.",
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({ channel: ChannelName }),
    result: Strict({ senders: Type.Array(ChannelSenderInfo) }),
  },
  'channel.sender.decide': {
    description: 'Allow or deny a sender (named by id or by the pairing code they were sent), or remove one. An allowed sender\'s next message starts a turn.',
    scopes: ['operator.pairing'],
    roles: ['client'],
    payload: Strict({ channel: ChannelName, sender: Type.String({ minLength: 1, maxLength: 256, description: 'A sender id, or a pairing code XXXX-XXXX.' }), action: lit(['allow', 'deny', 'remove'] as const) }),
    result: Strict({ sender: Type.Union([ChannelSenderInfo, Type.Null()]) }),
  },
  'artifact.list': {
    description: 'The artifacts attached to a run as evidence (by tools, nodes and playbook steps), in the order they were attached; metadata only, the bytes download from GET /artifacts/<artifact_id>.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ run_id: RunIdRef, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
    result: Strict({ artifacts: Type.Array(Strict({ artifact: ArtifactInfo, attachment: ArtifactAttachmentInfo })) }),
  },
  'artifact.get': {
    description: 'One artifact\'s metadata (size, media type, name, digest) and where it is attached. An artifact attached to no run is not_found except to operator.admin.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({ artifact_id: ArtifactId }),
    result: Strict({ artifact: ArtifactInfo, attachments: Type.Array(ArtifactAttachmentInfo) }),
  },
  'secret.list': {
    description: 'The caller tenant\'s secret handles and their bound destinations; never values.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ secrets: Type.Array(SecretInfo) }),
  },
} as const satisfies Record<string, OperationSpec>;

export type OperationType = keyof typeof OPERATIONS;

/**
 * The operations a token of a tenant other than `default` may call (docs/tenancy.md). Each reads
 * or changes only its caller's tenant's records (tokens, runs and their approvals, events,
 * conversations, its view of the audit log) or, for `tool.list`, the host's shared tool catalog.
 * Every other operation manages a host-wide resource (plugins, grants, policy, secrets, MCP
 * servers, nodes and pairings, channels, schedules, workflows, artifacts, presence, doctor): only
 * the `default` (host) tenant's tokens may call it; any other tenant gets `forbidden`. A new
 * operation is host-only until it is scoped and listed here.
 */
export const TENANT_OPERATIONS: ReadonlySet<OperationType> = new Set<OperationType>([
  'ping',
  'audit.list',
  'audit.verify',
  'token.create',
  'token.list',
  'token.revoke',
  'plugin.list',
  'plugin.get',
  'plugin.grant',
  'plugin.revoke',
  'tool.list',
  'tool.invoke',
  'run.get',
  'run.list',
  'run.cancel',
  'run.resolve',
  'approval.list',
  'approval.resolve',
  'policy.get',
  'policy.set',
  'policy.explain',
  'policy.override.revoke',
  'event.list',
  'conversation.create',
  'conversation.list',
  'conversation.get',
  'conversation.send',
  'secret.list',
]);

/** The tenant every row belongs to unless a tenant is named: the host's own. */
export const DEFAULT_TENANT = 'default';

export interface EventSpec {
  readonly description: string;
  /** Connections holding any of these scopes receive the event. */
  readonly audience: readonly ScopeT[];
  readonly payload: TSchema;
}

export const EVENTS = {
  'auth.failed': {
    description: 'An upgrade or handshake failed authentication.',
    audience: ['operator.admin'],
    payload: Strict({
      reason: Type.String(),
      remote_address: Type.String(),
      token_id: Type.Union([TokenId, Type.Null()]),
      close_code: Type.Union([Type.Integer(), Type.Null()]),
      http_status: Type.Union([Type.Integer(), Type.Null()]),
    }),
  },
  'authz.denied': {
    description: 'An authenticated peer called an operation its scopes or role do not allow.',
    audience: ['operator.admin'],
    payload: Strict({
      request_type: Type.String(),
      client_id: Type.String(),
      device_id: Type.String(),
      role: Role,
      token_id: TokenId,
      required_scopes: Type.Array(Scope),
    }),
  },
  'plugin.lifecycle': {
    description: 'A plugin was installed, upgraded, granted, revoked, enabled, disabled, configured or removed.',
    audience: ['operator.read'],
    payload: Strict({
      plugin_id: PluginId,
      version: Type.String(),
      action: Type.Union(['installed', 'upgraded', 'downgraded', 'granted', 'revoked', 'enabled', 'disabled', 'configured', 'removed'].map((a) => Type.Literal(a))),
      state: Type.Union([Type.Literal('disabled'), Type.Literal('enabled'), Type.Literal('removed')]),
    }),
  },
  'run.updated': {
    description: 'A run changed state (durable: also readable with event.list).',
    audience: ['operator.read'],
    payload: Type.Object({ run_id: Type.String(), state: lit(RUN_STATES) }),
  },
  'step.updated': {
    description: 'A step changed state (durable).',
    audience: ['operator.read'],
    payload: Type.Object({ run_id: Type.String(), step_idx: Type.Integer(), state: lit(STEP_STATES) }),
  },
  'approval.updated': {
    description: 'An approval was created or resolved, or expired (durable).',
    audience: ['operator.read'],
    payload: Type.Object({ approval_id: Type.String(), state: lit(APPROVAL_STATES) }),
  },
  'presence.upserted': {
    description: 'A client or node connected, is still seen, or lost its last connection (live only).',
    audience: ['operator.read'],
    payload: Strict({ entry: PresenceEntry }),
  },
  'presence.pruned': {
    description: 'A presence entry was dropped: disconnected for longer than the presence window, or stale (no heartbeat answered).',
    audience: ['operator.read'],
    payload: Strict({ device_id: DeviceId, role: Role, reason: Type.Union([Type.Literal('disconnected'), Type.Literal('stale')]) }),
  },
  'pairing.updated': {
    description: 'A node pairing was requested, approved (or its allowlist changed), denied or revoked (durable).',
    audience: ['operator.read'],
    payload: Strict({
      pairing_id: Type.String({ pattern: '^pair_[0-9a-f]{16}$' }),
      device_id: DeviceId,
      state: Type.Union(['awaiting_human', 'approved', 'denied', 'revoked'].map((x) => Type.Literal(x))),
      trust_level: Type.Union([Type.Literal('local'), Type.Literal('remote'), Type.Null()]),
      node_name: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  'message.created': {
    description: 'A message was stored in a conversation: a user message (operator or channel), a tool result, or a notice (durable).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, message_id: MessageId, seq: Type.Integer({ minimum: 1 }), role: lit(MESSAGE_ROLES), turn_id: Type.Union([TurnId, Type.Null()]), content: Type.Union([Type.String(), Type.Null()]), tool_call_id: Type.Union([Type.String(), Type.Null()]), run_id: Type.Union([Type.String(), Type.Null()]) }),
  },
  'message.delta': {
    description: 'A piece of assistant text as the model streams it (live only; message.final carries the whole).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, turn_id: TurnId, message_id: MessageId, delta: Type.String() }),
  },
  'message.final': {
    description: 'An assistant message is complete and stored: its text and the tool calls it asks for (durable).',
    audience: ['operator.read'],
    payload: Strict({
      conversation_id: ConversationId,
      turn_id: TurnId,
      message_id: MessageId,
      seq: Type.Integer({ minimum: 1 }),
      content: Type.Union([Type.String(), Type.Null()]),
      tool_calls: Type.Array(Strict({ id: Type.String(), tool_id: Type.Union([Type.String(), Type.Null()]), arguments: Type.String() })),
    }),
  },
  'turn.started': {
    description: 'An agent turn started (or resumed after a restart) (durable).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, turn_id: TurnId, state: lit(TURN_STATES), steps: Type.Integer({ minimum: 0 }), usage: TokenUsageInfo, error_code: Type.Union([Type.String(), Type.Null()]) }),
  },
  'turn.completed': {
    description: 'An agent turn ended with a final answer (durable).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, turn_id: TurnId, state: lit(TURN_STATES), steps: Type.Integer({ minimum: 0 }), usage: TokenUsageInfo, error_code: Type.Union([Type.String(), Type.Null()]) }),
  },
  'turn.failed': {
    description: 'An agent turn ended without an answer: the backend failed, the step cap was reached, or it was cancelled (durable).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, turn_id: TurnId, state: lit(TURN_STATES), steps: Type.Integer({ minimum: 0 }), usage: TokenUsageInfo, error_code: Type.Union([Type.String(), Type.Null()]) }),
  },
  'typing.started': {
    description: 'The agent is producing an answer in this conversation (live only).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, turn_id: TurnId }),
  },
  'typing.stopped': {
    description: 'The agent stopped producing an answer (live only).',
    audience: ['operator.read'],
    payload: Strict({ conversation_id: ConversationId, turn_id: TurnId }),
  },
  'delivery.receipt': {
    description: 'A reply to a channel chat was delivered (with the platform message ids) or finally failed (durable).',
    audience: ['operator.read'],
    payload: Strict({
      delivery_id: Type.String({ pattern: '^dlv_[0-9a-f]{16}$' }),
      conversation_id: ConversationId,
      message_id: MessageId,
      channel: Type.String(),
      state: lit(['delivered', 'failed'] as const),
      receipts: Type.Array(Type.String()),
      attempts: Type.Integer({ minimum: 0 }),
      error_code: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  'channel.sender_updated': {
    description: 'An unknown sender asked to talk to the agent (a pairing code was sent to them), or an operator allowed, denied or removed a sender (durable).',
    audience: ['operator.pairing'],
    payload: Strict({ channel: Type.String(), sender_id: Type.String(), name: Type.Union([Type.String(), Type.Null()]), state: lit(['allowed', 'pending', 'denied', 'removed'] as const), code: Type.Union([Type.String(), Type.Null()]) }),
  },
  'schedule.fired': {
    description: 'A schedule fired: the run (tool call) or message (agent turn) it started, recorded in the same transaction as the claim of its tick (durable). A catch-up fire covers `missed` ticks; `error_code` is set when the target could not be started (the tick is still used up).',
    audience: ['operator.read'],
    payload: Strict({
      schedule_id: Type.String({ pattern: '^sch_[0-9a-f]{16}$' }),
      name: Type.String(),
      fire_at: Type.String({ description: 'The tick this fire is for (ISO 8601, UTC).' }),
      ticks: Type.Integer({ minimum: 1, description: 'Ticks this fire stands for: 1, or more for a catch_up_once fire after downtime.' }),
      target: lit(['tool', 'agent_turn', 'playbook'] as const),
      run_id: Type.Union([Type.String(), Type.Null()]),
      conversation_id: Type.Union([ConversationId, Type.Null()]),
      message_id: Type.Union([MessageId, Type.Null()]),
      workflow_id: Type.Optional(Type.Union([WorkflowId, Type.Null()])),
      error_code: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  'workflow.updated': {
    description: 'A workflow moved: started, a step started or ended, paused at an approval gate (never with the resume token), resumed, finished or was cancelled (durable).',
    audience: ['operator.read'],
    payload: Strict({
      workflow_id: WorkflowId,
      name: Type.String(),
      state: lit(WORKFLOW_STATES),
      step_idx: Type.Integer({ minimum: 0 }),
      step_id: Type.Union([Type.String(), Type.Null()]),
      gate: Type.Union([Strict({ step_id: Type.String(), message: Type.String(), expires_at: Type.String() }), Type.Null()]),
      error_code: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  'artifact.created': {
    description: 'New content was stored as an artifact (durable). Identical content is stored once: a second put of the same bytes creates no event, only an attachment.',
    audience: ['operator.read'],
    payload: Strict({ artifact_id: ArtifactId, size: Type.Integer({ minimum: 0 }), media_type: Type.String(), name: Nullable(Type.String()), created_by: Type.String() }),
  },
  'artifact.attached': {
    description: 'An artifact was attached to a run as evidence, by a tool or node call (with its step and attempt) or through the artifact service (durable).',
    audience: ['operator.read'],
    payload: Strict({ artifact_id: ArtifactId, run_id: Type.String(), step_idx: Nullable(Type.Integer({ minimum: 0 })), attempt: Nullable(Type.Integer({ minimum: 1 })), kind: Type.Literal('evidence'), name: Nullable(Type.String()), media_type: Type.String(), size: Type.Integer({ minimum: 0 }) }),
  },
  'tool.invoked': {
    description: 'A tool call finished (ok or not).',
    audience: ['operator.read'],
    payload: Strict({
      tool_id: ToolId,
      ok: Type.Boolean(),
      error_code: Type.Union([Type.String(), Type.Null()]),
      duration_ms: Type.Number({ minimum: 0 }),
      token_id: Type.String(),
    }),
  },
} as const satisfies Record<string, EventSpec>;

export type EventType = keyof typeof EVENTS;
