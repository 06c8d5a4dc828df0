/**
 * The gateway as an MCP server: a Streamable HTTP endpoint (`POST /mcp`) through which any MCP
 * client lists and calls the vetted tools of the gateway. The only module that imports the MCP
 * SDK's server side.
 *
 * Stateless: no MCP session, so there is none to hijack or leak, and nothing but the durable run
 * outlives a request. Each HTTP request gets a fresh SDK transport (the SDK refuses to reuse a
 * stateless one: JSON-RPC ids of different clients would collide) connected to an SDK `Server`
 * taken from a pool: servers, with their handlers and schema validators, are built once and reused
 * by later requests. A server serves one request at a time and goes back to the pool only once
 * that request's transport is closed and every handler it started has settled, so nothing of one
 * request can reach another's transport. Handlers learn their caller from the request's `AuthInfo`
 * (the SDK hands the `req.auth` of a request to its handlers as `extra.authInfo`). The edge (core/gateway/server.ts) has already checked the Origin and the
 * bearer token; this module decides what the token may do, with the same operation catalog and
 * scopes as the WebSocket protocol, and runs everything through the same operation handlers
 * (`handle(type, payload, peer)`): contract check, policy, approvals, durable run and audit are
 * exactly those of a WebSocket `tool.invoke`.
 *
 * - `tools/list` (needs tool.list and policy.explain): the enabled tools whose policy decision,
 *   without arguments, is not `deny` (arguments can only turn require_approval into allow, via an
 *   args-bound override, never a deny into anything), plus the built-in `tyrum_run_status`.
 *   A token of a tenant other than the default (docs/tenancy.md) needs tool.list only: it is offered
 *   what its `tool.list` shows (the tools the tenant may call), less those its calls' decision
 *   denies (the stricter of the host's policy and the tenant's own, {@link McpEndpointDeps.enforcedPolicy}).
 * - `tools/call` (needs tool.invoke): a durable run, owned by the token's tenant. A tool the
 *   token's tenant may not call is refused with {@link MCP_ERR_FORBIDDEN}, as a WebSocket
 *   `tool.invoke` answers `forbidden`. The client's wait (default
 *   {@link MCP_DEFAULT_WAIT_MS}, `_meta["tyrum/wait_ms"]` up to {@link MCP_MAX_WAIT_MS}) covers
 *   an operator's approval: a call approved in time completes in the same `tools/call`;
 *   otherwise the answer says "Approval required" with the approval and run ids, and
 *   `tyrum_run_status` (needs run.get) fetches the result later.
 *
 * The MCP caller has no device identity: its `Peer` has connection id `mcp-<uuid>` (one per HTTP
 * request) and device id {@link MCP_DEVICE_ID}, which is not a device id (those start with
 * `dev_`), so audit entries show that a call came through MCP.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { DEFAULT_TENANT, OPERATIONS, type OperationType } from '../../schemas/index.js';
import { authorize } from '../auth/authorize.js';
import { tenantOf, type AuthenticatedToken } from '../auth/tokens.js';
import type { AuditActor } from '../audit/index.js';
import { ERROR_CODES, isTyrumError, TyrumError, type ErrorCode as TyrumErrorCode } from '../errors/index.js';
import { denialRecord, type Peer } from '../protocol/session.js';
import type { InflightLimiter } from '../protocol/inflight.js';
import { validate } from '../protocol/validate.js';
import { compilePluginSchema, toIssues } from '../../manifests/index.js';

/** How long a `tools/call` waits for its run (including an approval) when the client does not say. */
export const MCP_DEFAULT_WAIT_MS = 30_000;
/**
 * The longest wait a client may ask for with `_meta["tyrum/wait_ms"]`. Clients that wait this long
 * must raise their own request timeout (the SDK's default is 60 s) or reset it on progress.
 */
export const MCP_MAX_WAIT_MS = 300_000;
/** The longest `wait_ms` of `tyrum_run_status`. */
export const MCP_STATUS_MAX_WAIT_MS = 60_000;
/**
 * The first part of a call's wait happens inside `tool.invoke` (its `wait_ms`); the rest in slices
 * this module can interrupt (client gone, gateway stopping, token revoked) and report progress in.
 */
export const MCP_INVOKE_WAIT_MS = 10_000;
/** While waiting, the run is re-read at least this often (a change committed by another process has no in-process event). */
export const MCP_POLL_MS = 1_000;
/** While waiting, a client that asked for progress hears from us at least this often (SDK clients can reset their timeout on it). */
export const MCP_PROGRESS_INTERVAL_MS = 10_000;
/** On gateway shutdown, requests still in flight get this long to answer before their sockets are destroyed. */
export const MCP_CLOSE_GRACE_MS = 1_000;
/** Idle SDK servers kept for later requests (a request holds one while it runs; more are built under load). */
export const MCP_IDLE_SERVERS_MAX = 32;
/** The device id of every MCP caller's `Peer`: MCP has no device identity. */
export const MCP_DEVICE_ID = 'mcp';
/** The `_meta` key of a `tools/call` request that sets the client's wait in milliseconds. */
export const WAIT_META_KEY = 'tyrum/wait_ms';
/** The `_meta` key of a `tools/call` result that carries the run's id, state, approval and error. */
export const RUN_META_KEY = 'tyrum/run';
/** The `_meta` key of a listed tool that carries Tyrum's facts about it. */
export const TOOL_META_KEY = 'tyrum/tool';
/** The built-in tool that reports a run started by an earlier `tools/call`. */
export const STATUS_TOOL = 'tyrum_run_status';
/** JSON-RPC error code (server-defined range) for a call the token's scopes or role do not allow. */
export const MCP_ERR_FORBIDDEN = -32003;
/** JSON-RPC error code (server-defined range) for a token revoked or expired while its request waited. */
export const MCP_ERR_UNAUTHORIZED = -32004;
/**
 * JSON-RPC error code (server-defined range; "limit exceeded", as in EIP-1474) for a request item
 * over the token's in-flight budget: the wire code `rate_limited` of the WebSocket protocol.
 */
export const MCP_ERR_RATE_LIMITED = -32005;

/** Who called, as the edge authenticated them. */
export interface McpCaller {
  token: AuthenticatedToken;
  remoteAddress: string;
}

export interface McpEndpointDeps {
  /** The gateway's operation dispatch, the same function WebSocket sessions use. */
  handle(type: OperationType, payload: Record<string, unknown>, peer: Peer): Promise<Record<string, unknown>>;
  /** The gateway version, reported as the MCP server version. */
  version: string;
  /** Subscribes to committed changes of runs (to wake a waiting call at once); returns the unsubscribe function. */
  onRunChange?(listener: (runId: string) => void): () => void;
  /**
   * The policy decision enforced on `tenant`'s call of `toolId` without arguments (what
   * `policy.explain` by its token reports as `enforced`: the stricter of the host's policy and the
   * tenant's own): how `tools/list` leaves out denied tools for a token of a tenant other than the
   * default, without asking it for policy.explain.
   */
  enforcedPolicy(toolId: string, tenant: string): string;
  /** Whether a token is still live; checked while a call waits, so a revocation ends the wait. */
  tokenLive?(tokenId: string): boolean;
  /** Audit sink (authorization denials). Must not throw. */
  audit?(type: string, actor: AuditActor, data: Record<string, unknown>): void;
  /** Live event sink (authz.denied). Must not throw. */
  /** A live event for `tenant`'s clients (the acting token's tenant). */
  emit?(type: 'authz.denied', payload: Record<string, unknown>, tenant: string): void;
  log?(level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>): void;
  /**
   * The token's in-flight budget, the one its WebSocket connections use too: every `tools/list`
   * and `tools/call` item (of a batch or not) holds one slot while it runs.
   */
  inflight: InflightLimiter;
  /**
   * The edge's socket idle timeout: a waiting call writes an SSE comment at least twice per
   * period so a long wait (an approval) is not cut off as idle.
   */
  socketIdleTimeoutMs?: number;
}

/** Why the edge could not hand over a request's body (its HTTP body parser refused it). */
export type McpBodyProblem = 'invalid_json' | 'unsupported_media_type' | 'too_large' | 'unreadable';

export interface McpEndpoint {
  /** Serves one `POST /mcp` whose JSON body the edge has parsed and whose caller it has authenticated. */
  handle(req: IncomingMessage, res: ServerResponse, body: unknown, caller: McpCaller): Promise<void>;
  /**
   * Answers a `POST /mcp` whose body could not be read with a JSON-RPC error (id null): malformed
   * JSON or an empty body is a Parse error (-32700), as JSON-RPC 2.0 says; `detail` says what the
   * parser found.
   */
  badBody(res: ServerResponse, problem: McpBodyProblem, detail: string): void;
  /** Ends waits in flight (they answer with what they have), then destroys what is left after a grace period. */
  close(): Promise<void>;
}

/** A tool as `tool.list` describes it (ToolInfo in schemas/src/operations.ts). */
interface ToolInfo {
  tool_id: string;
  plugin_id: string;
  plugin_version: string;
  description: string;
  effect: 'read_only' | 'state_changing';
  input_schema: Record<string, unknown>;
  output_schema: Record<string, unknown>;
  definition_hash: string;
  plugin_digest: string;
}

interface RecordedError {
  code: string;
  wire: string;
  message: string;
  details?: Record<string, unknown>;
}

/** What this module needs to know about a one-step run. */
interface RunView {
  run_id: string;
  state: string;
  tool_id: string;
  output: unknown;
  error: RecordedError | null;
  approval_id: string | null;
  /** Known only from run.get: 'approval' or 'outcome_unknown' while paused. */
  pause_reason: string | null;
  created_by: string | null;
}

type Extra = {
  signal: AbortSignal;
  authInfo?: AuthInfo | undefined;
  _meta?: { progressToken?: string | number; [key: string]: unknown } | undefined;
  sendNotification: (n: { method: 'notifications/progress'; params: { progressToken: string | number; progress: number; message?: string } }) => Promise<void>;
};

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

const INSTRUCTIONS =
  'These are vetted Tyrum tools. Every call is checked by policy, runs in a sandbox and is audited; some calls wait for a human operator to approve them. ' +
  `When a call answers "Approval required", tell the user, and later call ${STATUS_TOOL} with the run_id it gave to get the result.`;

const STATUS_TOOL_DEF: Tool = {
  name: STATUS_TOOL,
  title: 'Tyrum run status',
  description:
    'The state and, once it has finished, the result of a Tyrum tool call that was still waiting (for example for an operator\'s approval) when its tools/call answered. ' +
    'Give the run_id from that answer; wait_ms (0 to 60000, default 0) waits for the run to finish. Only runs started with the same token are visible.',
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['run_id'],
    properties: {
      run_id: { type: 'string', minLength: 1, maxLength: 64, description: 'The run id a tools/call answer gave.' },
      wait_ms: { type: 'integer', minimum: 0, maximum: MCP_STATUS_MAX_WAIT_MS, description: 'How long to wait for the run to finish (default 0: answer at once).' },
    },
  },
  annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A JSON-RPC error to answer with. The SDK sends a thrown error's `code`, `message` and `data`;
 * an McpError would prefix its message with "MCP error <code>: ", so this one does not.
 */
class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

/** The JSON-RPC error for a Tyrum error: the Tyrum code leads the message and is in `data`. */
function rpcError(rpcCode: number, e: { code: string; wire: string; message: string; details?: Record<string, unknown> | undefined }): RpcError {
  return new RpcError(rpcCode, `${e.code}: ${e.message}`, { code: e.code, wire: e.wire, ...(e.details !== undefined ? { details: e.details } : {}) });
}

/**
 * An answer written before any MCP machinery runs (role, shutdown, empty batch or unreadable
 * body refusals): the same JSON-RPC error {@link rpcError} gives the SDK to write, with id null.
 */
function refuse(res: ServerResponse, status: number, rpcCode: number, code: TyrumErrorCode, message: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const e = rpcError(rpcCode, { code, wire: ERROR_CODES[code].wire, message });
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code: e.code, message: e.message, data: e.data }, id: null });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** True for a tool served from an external or WASM MCP server (its output is already an MCP result). */
function isMcpOrigin(toolId: string): boolean {
  return toolId.startsWith('mcp.');
}

function toMcpTool(t: ToolInfo, decision: string): Tool {
  // An MCP-origin tool's Tyrum output schema wraps its own outputSchema as `structuredContent`.
  const wrapped = (t.output_schema.properties as Record<string, Record<string, unknown>> | undefined)?.structuredContent;
  const outputSchema = isMcpOrigin(t.tool_id) ? wrapped : t.output_schema;
  return {
    name: t.tool_id,
    description: t.description,
    inputSchema: t.input_schema as Tool['inputSchema'],
    // MCP requires an object schema here; a tool whose output is not an object gets none.
    ...(outputSchema?.type === 'object' ? { outputSchema: outputSchema as NonNullable<Tool['outputSchema']> } : {}),
    annotations: { readOnlyHint: t.effect === 'read_only' },
    _meta: {
      [TOOL_META_KEY]: { plugin_id: t.plugin_id, plugin_version: t.plugin_version, effect: t.effect, definition_hash: t.definition_hash, plugin_digest: t.plugin_digest, policy: decision },
    },
  };
}

function fromInvoke(r: Record<string, unknown>): RunView {
  return {
    run_id: String(r.run_id),
    state: String(r.state),
    tool_id: String(r.tool_id ?? ''),
    output: r.output,
    error: (r.error as RecordedError | null) ?? null,
    approval_id: (r.approval_id as string | null) ?? null,
    pause_reason: null,
    created_by: null,
  };
}

function fromRunGet(d: Record<string, unknown>): RunView {
  const run = d.run as { id: string; kind: string; state: string; created_by: string; pause_reason: string | null; result: unknown; error: RecordedError | null };
  const steps = d.steps as Array<{ tool_id: string; state: string; result: unknown; error: RecordedError | null; approval_id: string | null }>;
  const step = steps[0];
  // A workflow (started over WebSocket with the same token) reports its run-level result and the step that waits.
  const tool = run.kind === 'tool';
  const current = steps.find((s) => s.state === 'waiting_approval') ?? step;
  return {
    run_id: run.id,
    state: run.state,
    tool_id: tool ? (step?.tool_id ?? '') : `workflow of ${steps.length} steps`,
    output: run.state === 'succeeded' ? (tool ? (step?.result ?? null) : (run.result ?? null)) : null,
    error: run.error ?? current?.error ?? null,
    approval_id: current?.approval_id ?? null,
    pause_reason: run.pause_reason,
    created_by: run.created_by,
  };
}

/** The machine-readable summary of a run put in a result's `_meta`. */
function runMeta(v: RunView): Record<string, unknown> {
  return { [RUN_META_KEY]: { run_id: v.run_id, tool_id: v.tool_id, state: v.state, approval_id: v.approval_id, pause_reason: v.pause_reason, error: v.error } };
}

function errorLine(e: RecordedError | null): string {
  return e === null ? 'no error recorded' : `${e.code} (${e.wire}): ${e.message}`;
}

/** What a person (or model) reading the answer must know about a run that has not finished. */
function pendingText(v: RunView): string {
  if (v.state === 'paused' && v.pause_reason !== 'outcome_unknown' && v.approval_id !== null) {
    return (
      `Approval required: approval ${v.approval_id} for run ${v.run_id} (${v.tool_id}); ` +
      `an operator can approve it with \`tyrum approvals approve ${v.approval_id}\`; ` +
      `call ${STATUS_TOOL} with {"run_id":"${v.run_id}"} to get the result.`
    );
  }
  if (v.state === 'paused') {
    return (
      `Operator decision required: run ${v.run_id} (${v.tool_id}) was cut off mid-call and whether it had its effect is unknown; ` +
      `an operator decides with \`tyrum run resolve ${v.run_id} 0 retry|skip|fail\`; call ${STATUS_TOOL} with {"run_id":"${v.run_id}"} to get the result.`
    );
  }
  return `Still ${v.state}: run ${v.run_id} (${v.tool_id}) has not finished; call ${STATUS_TOOL} with {"run_id":"${v.run_id}"} to get the result.`;
}

/**
 * The answer to `tools/call` for a run. Only a success carries `structuredContent` (the output,
 * when it is an object): the MCP SDK client checks any `structuredContent` against the tool's
 * output schema, even on an error result, so error facts travel in the text and in `_meta`.
 */
function callResult(v: RunView): CallToolResult {
  if (v.state === 'succeeded' && isMcpOrigin(v.tool_id) && isObject(v.output) && Array.isArray(v.output.content)) {
    // Passed through as the server answered (redacted, checked against the approved outputSchema).
    const out = v.output as { content: CallToolResult['content']; structuredContent?: Record<string, unknown> };
    return { content: out.content, ...(isObject(out.structuredContent) ? { structuredContent: out.structuredContent } : {}), _meta: runMeta(v) };
  }
  if (v.state === 'succeeded') {
    return {
      content: [{ type: 'text', text: JSON.stringify(v.output ?? null) }],
      ...(isObject(v.output) ? { structuredContent: v.output } : {}),
      _meta: runMeta(v),
    };
  }
  const text = v.state === 'failed' ? `Tool call failed: ${errorLine(v.error)} [run ${v.run_id}]` : v.state === 'cancelled' ? `Tool call cancelled: run ${v.run_id} (${errorLine(v.error)})` : pendingText(v);
  return { content: [{ type: 'text', text }], isError: true, _meta: runMeta(v) };
}

/** The answer of `tyrum_run_status`: a status report, an error only when the run failed or was cancelled. */
function statusResult(v: RunView): CallToolResult {
  const report: Record<string, unknown> = { run_id: v.run_id, tool_id: v.tool_id, state: v.state };
  if (v.state === 'succeeded') report.output = v.output ?? null;
  if (v.error !== null && v.state !== 'succeeded') report.error = v.error;
  if (v.approval_id !== null) report.approval_id = v.approval_id;
  if (v.pause_reason !== null) report.pause_reason = v.pause_reason;
  if (v.state === 'succeeded') return { content: [{ type: 'text', text: JSON.stringify(report) }], structuredContent: report };
  if (TERMINAL.has(v.state)) return { content: [{ type: 'text', text: `Run ${v.run_id} (${v.tool_id}) ${v.state}: ${errorLine(v.error)}` }], structuredContent: report, isError: true };
  return { content: [{ type: 'text', text: pendingText(v) }], structuredContent: report };
}

/** An execution error of a call that never became a run (bad arguments, conflicts): the model can correct it. */
function toolError(e: TyrumError): CallToolResult {
  const issues = e.details?.issues;
  const detail = Array.isArray(issues) ? ` ${JSON.stringify(issues)}` : '';
  return { content: [{ type: 'text', text: `Tool call refused: ${e.code} (${e.wire}): ${e.message}${detail}` }], isError: true, _meta: { [RUN_META_KEY]: { run_id: null, error: { code: e.code, wire: e.wire, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) } } } };
}

/** The client's wait for one call, from `_meta["tyrum/wait_ms"]`. */
function clientWait(meta: Record<string, unknown> | undefined): number {
  const v = meta?.[WAIT_META_KEY];
  if (v === undefined) return MCP_DEFAULT_WAIT_MS;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw rpcError(ErrorCode.InvalidParams, { code: 'TYRUM_ERR_INVALID_REQUEST', wire: 'invalid_request', message: `_meta["${WAIT_META_KEY}"] must be a non-negative integer (milliseconds)` });
  }
  return Math.min(v, MCP_MAX_WAIT_MS);
}

/** Creates the endpoint over the gateway's operation dispatch. */
export function createMcpEndpoint(deps: McpEndpointDeps): McpEndpoint {
  const log = deps.log ?? (() => undefined);
  // Two SSE comments per idle period at the least, never more often than every 50 ms.
  const keepAliveMs = Math.max(50, Math.min(15_000, Math.floor((deps.socketIdleTimeoutMs ?? 30_000) / 2)));
  const active = new Set<{ stop: AbortController; res: ServerResponse; done: Promise<void> }>();
  let closing = false;

  /** An operation as the WebSocket protocol would run it: contract check, then the handler. */
  async function op(type: OperationType, payload: Record<string, unknown>, peer: Peer): Promise<Record<string, unknown>> {
    const issues = validate(OPERATIONS[type].payload, payload);
    if (issues.length > 0) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `invalid ${type} payload`, { issues });
    return deps.handle(type, payload, peer);
  }

  /** Throws a JSON-RPC error (and audits, as Session does) unless the peer may call every one of `types`. */
  function authorizeOps(types: readonly OperationType[], peer: Peer, method: string): void {
    for (const type of types) {
      const d = authorize(OPERATIONS[type], { scopes: peer.token.scopes, role: peer.role, tenant: peer.token.tenant_id }, type);
      if (d.allowed) continue;
      const { required, audit, event } = denialRecord(type, d, peer, { mcp_method: method });
      // The refusal is the acting tenant's: audited with its tenant, pushed to its clients (as on WebSocket).
      const owner = tenantOf(peer.token);
      deps.audit?.('authz.denied', { kind: 'token', id: peer.token.id, ...(owner !== DEFAULT_TENANT ? { tenant: owner } : {}) }, audit);
      deps.emit?.('authz.denied', event, owner);
      throw rpcError(MCP_ERR_FORBIDDEN, { code: 'TYRUM_ERR_FORBIDDEN', wire: 'forbidden', message: d.reason === 'tenant' ? `${method} needs ${type}, which is for the default tenant's tokens only` : `${method} needs ${type}, which requires one of: ${required.join(', ')}`, details: { request_type: type, required_scopes: required } });
    }
  }

  /** Non-Tyrum failures never leak their message to the client. */
  function internal(e: unknown, what: string): Error {
    if (e instanceof RpcError || e instanceof McpError) return e;
    if (isTyrumError(e)) return rpcError(ErrorCode.InternalError, e);
    log('error', `mcp ${what} failed`, { error: e instanceof Error ? e.stack : String(e) });
    return rpcError(ErrorCode.InternalError, { code: 'TYRUM_ERR_INTERNAL', wire: 'internal', message: 'internal error' });
  }

  async function listTools(peer: Peer): Promise<{ tools: Tool[] }> {
    // Another tenant's token is not asked for policy.explain: its tools are filtered by the decision its calls get.
    const hosted = tenantOf(peer.token) === DEFAULT_TENANT;
    authorizeOps(hosted ? ['tool.list', 'policy.explain'] : ['tool.list'], peer, 'tools/list');
    try {
      // tool.list answers a tenant's token with the tools its tenant may call.
      const { tools } = (await op('tool.list', {}, peer)) as unknown as { tools: ToolInfo[] };
      const out: Tool[] = [];
      for (const t of tools) {
        // `enforced` is what a call gets: in observe mode a rule's deny is recorded, not applied.
        const enforced = hosted ? ((await op('policy.explain', { tool_id: t.tool_id }, peer)) as { enforced: string }).enforced : deps.enforcedPolicy(t.tool_id, tenantOf(peer.token));
        if (enforced !== 'deny') out.push(toMcpTool(t, enforced));
      }
      if (authorize(OPERATIONS['run.get'], { scopes: peer.token.scopes, role: peer.role, tenant: peer.token.tenant_id }, 'run.get').allowed) out.push(STATUS_TOOL_DEF);
      return { tools: out };
    } catch (e) {
      throw internal(e, 'tools/list');
    }
  }

  async function readRun(runId: string, peer: Peer): Promise<RunView> {
    return fromRunGet(await op('run.get', { run_id: runId }, peer));
  }

  /**
   * Waits until the run is terminal, the deadline passes or `signal` fires, re-reading it on each
   * change (or every MCP_POLL_MS) and telling a client that asked for progress what it waits for.
   */
  async function awaitRun(first: RunView, deadline: number, peer: Peer, extra: Extra, signal: AbortSignal): Promise<RunView> {
    let view = first;
    if (TERMINAL.has(view.state)) return view;
    let changed = false;
    let wake: (() => void) | null = null;
    const off = deps.onRunChange?.((id) => {
      if (id !== view.run_id) return;
      changed = true;
      wake?.();
    });
    const progressToken = extra._meta?.progressToken;
    let progress = 0;
    let lastMessage = '';
    let lastSent = 0;
    try {
      // Subscribed first, then read: no change can fall between the two.
      view = await readRun(view.run_id, peer);
      for (;;) {
        if (TERMINAL.has(view.state) || signal.aborted) return view;
        if (deps.tokenLive && !deps.tokenLive(peer.token.id)) {
          throw rpcError(MCP_ERR_UNAUTHORIZED, { code: 'TYRUM_ERR_UNAUTHORIZED', wire: 'unauthorized', message: `the token was revoked or expired while run ${view.run_id} was awaited` });
        }
        const left = deadline - Date.now();
        if (left <= 0) return view;
        if (progressToken !== undefined) {
          const message = view.state === 'paused' ? pendingText(view) : `run ${view.run_id} is ${view.state}`;
          if (message !== lastMessage || Date.now() - lastSent >= MCP_PROGRESS_INTERVAL_MS) {
            lastMessage = message;
            lastSent = Date.now();
            await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: ++progress, message } }).catch(() => undefined);
          }
        }
        if (!changed) {
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              signal.removeEventListener('abort', done);
              wake = null;
              resolve();
            };
            const timer = setTimeout(done, Math.min(left, MCP_POLL_MS));
            signal.addEventListener('abort', done, { once: true });
            wake = done;
          });
        }
        changed = false;
        if (signal.aborted) return view;
        view = await readRun(view.run_id, peer);
      }
    } finally {
      off?.();
    }
  }

  async function callTool(peer: Peer, params: { name: string; arguments?: Record<string, unknown> | undefined; _meta?: Record<string, unknown> | undefined }, extra: Extra, stop: AbortSignal): Promise<CallToolResult> {
    if (params.name === STATUS_TOOL) return runStatus(peer, params.arguments ?? {}, extra, stop);
    authorizeOps(['tool.invoke'], peer, 'tools/call');
    const wait = clientWait(params._meta);
    const started = Date.now();
    const signal = AbortSignal.any([extra.signal, stop]);
    const payload = { tool_id: params.name, args: params.arguments ?? {}, wait_ms: Math.min(wait, MCP_INVOKE_WAIT_MS) };
    let first: RunView;
    try {
      // A name that cannot be a tool id is an unknown tool, like one the registry does not have.
      if (validate(OPERATIONS['tool.invoke'].payload, payload).some((i) => i.path === '/tool_id')) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${params.name}`);
      first = fromInvoke(await op('tool.invoke', payload, peer));
    } catch (e) {
      // MCP: an unknown tool is a protocol error; anything else refused before a run exists
      // (arguments that fail the input schema, a conflict) is an execution error the model can fix.
      if (isTyrumError(e, 'TYRUM_ERR_NOT_FOUND')) throw rpcError(ErrorCode.InvalidParams, { code: e.code, wire: e.wire, message: `unknown tool ${params.name}` });
      // A tool the token's tenant may not call (docs/tenancy.md): refused, as tool.invoke refuses it.
      if (isTyrumError(e, 'TYRUM_ERR_FORBIDDEN')) throw rpcError(MCP_ERR_FORBIDDEN, e);
      if (isTyrumError(e)) return toolError(e);
      throw internal(e, 'tools/call');
    }
    try {
      return callResult(await awaitRun(first, started + wait, peer, extra, signal));
    } catch (e) {
      throw internal(e, 'tools/call');
    }
  }

  async function runStatus(peer: Peer, args: Record<string, unknown>, extra: Extra, stop: AbortSignal): Promise<CallToolResult> {
    authorizeOps(['run.get'], peer, `tools/call ${STATUS_TOOL}`);
    // Checked against the inputSchema the tool is listed with, so the two cannot drift apart.
    if (!statusArgs(args)) {
      return toolError(new TyrumError('TYRUM_ERR_INVALID_REQUEST', `${STATUS_TOOL} takes {"run_id": string, "wait_ms"?: integer 0-${MCP_STATUS_MAX_WAIT_MS}}`, { issues: toIssues(statusArgs.errors) }));
    }
    const runId = args.run_id as string;
    const waitMs = (args.wait_ms as number | undefined) ?? 0;
    const started = Date.now();
    const notFound = () => toolError(new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`));
    try {
      let view: RunView;
      try {
        view = await readRun(runId, peer);
      } catch (e) {
        if (isTyrumError(e, 'TYRUM_ERR_NOT_FOUND')) return notFound();
        throw e;
      }
      // Another token's run is indistinguishable from no run.
      if (view.created_by !== peer.token.id) return notFound();
      if (waitMs > 0) view = await awaitRun(view, started + waitMs, peer, extra, AbortSignal.any([extra.signal, stop]));
      return statusResult(view);
    } catch (e) {
      throw internal(e, STATUS_TOOL);
    }
  }

  /**
   * Runs one request item in a slot of the token's in-flight budget (shared with its WebSocket
   * connections); an item over the budget is answered with its own rate-limit error, so a batch
   * of 100 calls gets no more concurrent work than 100 separate requests.
   */
  async function limited<T>(peer: Peer, run: () => Promise<T>): Promise<T> {
    const release = deps.inflight.acquire(peer.token.id);
    if (release === null) {
      throw rpcError(MCP_ERR_RATE_LIMITED, { code: 'TYRUM_ERR_RATE_LIMITED', wire: 'rate_limited', message: `more than ${deps.inflight.max} requests in flight for this token (WebSocket and /mcp together); retry later` });
    }
    try {
      return await run();
    } finally {
      release();
    }
  }

  /** One HTTP request as its handlers see it: the caller, the gateway's stop signal, the handlers it started. */
  interface RequestContext {
    peer: Peer;
    stop: AbortSignal;
    running: Set<Promise<unknown>>;
  }

  /** The request each `AuthInfo` was made for (see the header: shared servers, per-request caller). */
  const contexts = new WeakMap<AuthInfo, RequestContext>();
  const idle: Server[] = [];

  /** Runs a handler for the request `extra` belongs to, recorded so its server is not reused before it settles. */
  function forRequest<T>(extra: Extra, run: (ctx: RequestContext) => Promise<T>): Promise<T> {
    const ctx = extra.authInfo === undefined ? undefined : contexts.get(extra.authInfo);
    // Every request is given its AuthInfo before its transport sees it; a handler without one is a bug here.
    if (ctx === undefined) return Promise.reject(internal(new Error('an MCP request reached a handler without its caller'), 'request'));
    const p = run(ctx);
    ctx.running.add(p);
    const forget = () => ctx.running.delete(p);
    p.then(forget, forget);
    return p;
  }

  function buildServer(): Server {
    const server = new Server({ name: 'tyrum', version: deps.version }, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
    server.onerror = (e) => log('info', 'mcp transport error', { error: e.message });
    server.setRequestHandler(ListToolsRequestSchema, (_request, extra) => forRequest(extra, ({ peer }) => limited(peer, () => listTools(peer))));
    server.setRequestHandler(CallToolRequestSchema, (request, extra) =>
      forRequest(extra as unknown as Extra, ({ peer, stop }) => limited(peer, () => callTool(peer, request.params, extra as unknown as Extra, stop))),
    );
    return server;
  }

  /** Back to the pool once the request's transport is closed, its handling done and its handlers settled. */
  async function release(server: Server, transport: StreamableHTTPServerTransport, handled: () => Promise<unknown>, ctx: RequestContext): Promise<void> {
    await transport.close().catch(() => undefined);
    await handled().catch(() => undefined);
    while (ctx.running.size > 0) await Promise.allSettled([...ctx.running]);
    if (!closing && idle.length < MCP_IDLE_SERVERS_MAX) idle.push(server);
  }

  const statusArgs = compilePluginSchema(STATUS_TOOL_DEF.inputSchema as Record<string, unknown>, `${STATUS_TOOL} inputSchema`);

  return {
    async handle(req, res, body, caller) {
      const { token } = caller;
      if (closing) return refuse(res, 503, ErrorCode.ConnectionClosed, 'TYRUM_ERR_CONNECTION', 'the gateway is shutting down');
      if (!token.roles.includes('client')) {
        deps.audit?.('authz.denied', { kind: 'token', id: token.id }, { request_type: 'mcp', reason: 'role', required_scopes: [], role: 'client', device_id: MCP_DEVICE_ID, connection_id: null });
        return refuse(res, 403, MCP_ERR_FORBIDDEN, 'TYRUM_ERR_FORBIDDEN', 'this token is not valid for the client role');
      }

      // JSON-RPC 2.0: an empty batch is answered with one Invalid Request error (the SDK would answer 202).
      if (Array.isArray(body) && body.length === 0) return refuse(res, 400, ErrorCode.InvalidRequest, 'TYRUM_ERR_INVALID_REQUEST', 'Invalid Request: an empty batch');

      const connectionId = `mcp-${randomUUID()}`;
      const peer: Peer = {
        connectionId,
        clientId: connectionId,
        deviceId: MCP_DEVICE_ID,
        role: 'client',
        token,
        remoteAddress: caller.remoteAddress,
        pubkey: '',
        device: { label: 'mcp', platform: null, version: null, mode: 'mcp' },
        capabilities: [],
      };
      const stop = new AbortController();
      const ctx: RequestContext = { peer, stop: stop.signal, running: new Set() };
      // The token id, never its secret: the SDK passes this object to the handlers only.
      const auth: AuthInfo = { token: token.id, clientId: connectionId, scopes: [...token.scopes], ...(token.expires_at !== null ? { expiresAt: Math.floor(token.expires_at / 1000) } : {}) };
      contexts.set(auth, ctx);
      (req as IncomingMessage & { auth?: AuthInfo }).auth = auth;
      const server = idle.pop() ?? buildServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, keepAliveMs });
      let closed!: () => void;
      const entry = { stop, res, done: new Promise<void>((resolve) => (closed = resolve)) };
      active.add(entry);
      let handled: Promise<unknown> = Promise.resolve();
      res.once('close', () => {
        active.delete(entry);
        // The client went away or the answer is out: closing the transport disconnects the server,
        // which aborts the handlers still running for this request.
        void release(server, transport, () => handled, ctx);
        closed();
      });
      try {
        await server.connect(transport);
        handled = transport.handleRequest(req, res, body);
        await handled;
      } catch (e) {
        log('error', 'mcp request failed', { error: e instanceof Error ? e.stack : String(e), connection_id: connectionId });
        if (!res.headersSent) refuse(res, 500, ErrorCode.InternalError, 'TYRUM_ERR_INTERNAL', 'internal error');
        else res.destroy();
      }
    },

    badBody(res, problem, detail) {
      const bad = (status: number, rpcCode: number, message: string) => refuse(res, status, rpcCode, 'TYRUM_ERR_INVALID_REQUEST', message);
      switch (problem) {
        case 'invalid_json':
          return bad(400, ErrorCode.ParseError, `Parse error: ${detail}`);
        case 'unsupported_media_type':
          return bad(415, -32000, `Unsupported Media Type: Content-Type must be application/json (${detail})`);
        case 'too_large':
          return bad(413, -32000, `Payload Too Large: ${detail}`);
        case 'unreadable':
          return bad(400, ErrorCode.InvalidRequest, `Invalid Request: ${detail}`);
      }
    },

    async close() {
      closing = true;
      idle.length = 0;
      for (const a of active) a.stop.abort();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...active].map((a) => a.done)), new Promise<void>((resolve) => (timer = setTimeout(resolve, MCP_CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      for (const a of active) a.res.destroy();
    },
  };
}
