/**
 * Node capabilities as tools: the third source of the tool catalog (after plugins and MCP).
 *
 * `node.<capability>@<node>` names a capability of one approved node (its name, or its device
 * id); `node.<capability>` names it on the only approved node that may run it. A tool exists for
 * every capability an approved pairing allows that has a contract the gateway knows (the built-in
 * ones, schemas/src/capabilities.ts): its input and output are checked against that contract,
 * whatever the node says. Its effect is `state_changing` unless the operator allowed it as
 * read-only, so by default a node capability waits for an approval.
 *
 * A call goes through the one pipeline (policy, approvals, a durable step, audit) and ends here:
 * the gateway sends `task.execute` to the node's connection that holds its node token. It fails
 * with a code that says which condition is not met: not paired (TYRUM_ERR_NODE_NOT_PAIRED), not
 * allowed or allowed for another definition (TYRUM_ERR_NODE_NOT_ALLOWLISTED), not connected
 * (TYRUM_ERR_NODE_UNAVAILABLE, nothing was sent), or the connection closed while the node worked
 * (TYRUM_ERR_NODE_DISCONNECTED: the engine then marks a non-idempotent step outcome_unknown and
 * never re-sends it by itself).
 */
import { createHash, randomBytes } from 'node:crypto';
import { capabilityRef, knownCapability, type KnownCapability } from './contracts.js';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { compilePluginSchema, toIssues } from '../../manifests/json-schema.js';
import type { AuditActor } from '../audit/index.js';
import type { DescribedTool, ToolSource } from '../registry/tools.js';
import type { ToolEntry } from '../registry/host.js';
import type { PairingRow, Store } from '../store/index.js';
import type { AllowedCapability } from './pairing.js';
import type { PeerAnswer, Session } from '../protocol/session.js';
import { raceAbort } from '../util/abort.js';
import { parseInlineArtifacts } from '../artifacts/inline.js';
import type { ArtifactOutput } from '../execution/types.js';

/** `node.<capability>[@<selector>]` */
const NODE_TOOL = /^node\.([a-z][a-z0-9_]{0,31}(?:\.[a-z][a-z0-9_]{0,31}){1,4})(?:@([a-z0-9][a-z0-9_-]{0,62}))?$/;

/** The node connections NodeHost dispatches to (core/nodes/registry.ts). */
export interface NodeConnections {
  /** The open connection holding this pairing's node token, if any. */
  paired(pairingId: string): Session | undefined;
  /** True when the node reported the capability ready on that connection, else why not. */
  readiness(pairingId: string, capability: string): true | string;
  /** Collect the evidence the node streams for a dispatch (attempt.evidence) until `done()`. */
  track(pairingId: string, dispatchId: string): { items: Array<Record<string, unknown>>; dropped: number; done(): void };
}

export interface NodeHostOptions {
  store: Store;
  connections: NodeConnections;
  /** PostgreSQL replicas: nodes connected to another replica. */
  remote?: RemoteNodes;
  now?: () => number;
}

interface Resolved {
  described: DescribedTool;
  pairing: PairingRow;
  allowed: AllowedCapability;
  known: KnownCapability;
}

export class NodeHost implements ToolSource {
  constructor(private readonly o: NodeHostOptions) {}

  tools(): Array<Omit<ToolEntry, 'postcondition'>> {
    const allowed = this.o.store.committed.pairings.list('approved', 10_000).flatMap((p) => allowlist(p).map((a) => ({ p, a, k: knownCapability(a.id, a.version) })));
    const holders = new Map<string, number>();
    for (const { a, k } of allowed) if (k) holders.set(a.id, (holders.get(a.id) ?? 0) + 1);
    const out: Array<Omit<ToolEntry, 'postcondition'>> = [];
    for (const { p, a, k } of allowed) {
      if (!k) continue;
      out.push(entryOf(describe(`node.${a.id}@${p.node_name}`, p, a, k)));
      // The short form, where exactly one approved node may run the capability.
      if (holders.get(a.id) === 1) out.push(entryOf(describe(`node.${a.id}`, p, a, k)));
    }
    return out;
  }

  describe(toolId: string): DescribedTool | undefined {
    const r = this.resolve(toolId);
    return r instanceof TyrumError ? undefined : r.described;
  }

  /** `describe`, or the error a call fails with (which condition is not met). */
  lookup(toolId: string): DescribedTool | TyrumError {
    const r = this.resolve(toolId);
    return r instanceof TyrumError ? r : r.described;
  }

  checkCall(toolId: string, args: Record<string, unknown>): void {
    const r = this.resolve(toolId);
    if (r instanceof TyrumError) throw r;
    checkArgs(toolId, r.known, args);
  }

  async invoke(toolId: string, args: Record<string, unknown>, _actor: AuditActor, signal?: AbortSignal): Promise<{ output: unknown; evidence: Record<string, unknown>; definition_hash: string; plugin_digest: string; duration_ms: number; usage: null; artifacts?: ArtifactOutput[] }> {
    const started = performance.now();
    const r = this.resolve(toolId);
    if (r instanceof TyrumError) throw r;
    const { pairing, allowed, known, described } = r;
    const contract = known.contract;
    checkArgs(toolId, known, args);
    const dispatchId = `dsp_${randomBytes(12).toString('hex')}`;
    const task: NodeTask = { dispatch_id: dispatchId, capability: allowed.id, capability_version: allowed.version, args, timeout_ms: contract.default_timeout_ms };
    // PostgreSQL replicas: a node connected to another replica gets the task through it (core/nodes/cluster.ts).
    const local = this.o.connections.paired(pairing.id) !== undefined;
    const remote = local ? undefined : this.o.remote?.holder(pairing.id);
    const { answer, streamed } = remote !== undefined ? await this.o.remote!.send(remote, pairing, allowed, task, signal) : await sendToNode(this.o.connections, pairing, allowed, task, signal);
    const duration = performance.now() - started;
    if (!answer.ok) {
      const { code, message, details } = answer.error;
      const text = `node ${pairing.node_name}: ${message.slice(0, 2000)}`;
      if (code === 'forbidden') throw nodeError('TYRUM_ERR_NODE_REFUSED', text, pairing, { dispatch_id: dispatchId, ...(details ?? {}) });
      if (code === 'invalid_request') throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', text, { dispatch_id: dispatchId, ...(details ?? {}) });
      if (code === 'timeout') throw new TyrumError('TYRUM_ERR_TIMEOUT', text, { dispatch_id: dispatchId });
      throw nodeError('TYRUM_ERR_NODE_CAPABILITY_FAILED', text, pairing, { dispatch_id: dispatchId, node_code: code, ...(details?.retryable === true ? { retryable: true } : {}) });
    }
    const output = answer.result.output;
    // Evidence blobs the node attached (`artifacts` beside output and evidence): stored by the engine.
    const artifacts = answer.result.artifacts === undefined ? [] : parseInlineArtifacts(answer.result.artifacts, `node ${pairing.node_name ?? pairing.device_id} (${allowed.id})`);
    const check = validators(known).output;
    if (typeof output !== 'object' || output === null || !check(output)) {
      throw nodeError('TYRUM_ERR_NODE_OUTPUT_INVALID', `node ${pairing.node_name} answered ${allowed.id} with an output its contract refuses`, pairing, { dispatch_id: dispatchId, issues: toIssues(check.errors) });
    }
    return {
      output,
      evidence: { ...evidenceOf(answer.result.evidence, dispatchId, pairing), ...(streamed.items.length > 0 ? { streamed: streamed.items } : {}), ...(streamed.dropped > 0 ? { streamed_dropped: streamed.dropped } : {}) },
      definition_hash: described.entry.definition_hash,
      plugin_digest: described.entry.plugin_digest,
      duration_ms: duration,
      usage: null,
      ...(artifacts.length > 0 ? { artifacts } : {}),
    };
  }

  private resolve(toolId: string): Resolved | TyrumError {
    const m = NODE_TOOL.exec(toolId);
    if (!m) return new TyrumError('TYRUM_ERR_NOT_FOUND', `no tool ${toolId}: node tools are node.<capability>[@<node>]`, { tool_id: toolId });
    const cap = m[1]!;
    const selector = m[2];
    const candidates = this.candidates(selector);
    if (candidates.length === 0) {
      return new TyrumError('TYRUM_ERR_NODE_NOT_PAIRED', selector === undefined ? `no approved node (for ${toolId})` : `no approved node ${selector}`, { tool_id: toolId, failed: 'paired' });
    }
    const holding = candidates.flatMap((p) => allowlist(p).filter((a) => a.id === cap).map((a) => ({ p, a }))).sort((x, y) => (x.p.node_name ?? '').localeCompare(y.p.node_name ?? ''));
    if (holding.length === 0) {
      return new TyrumError('TYRUM_ERR_NODE_NOT_ALLOWLISTED', `${cap} is not in the allowlist of ${selector === undefined ? 'any approved node' : `node ${selector}`}`, { tool_id: toolId, failed: 'allowlisted' });
    }
    if (holding.length > 1) {
      return new TyrumError('TYRUM_ERR_NODE_AMBIGUOUS', `${holding.length} nodes may run ${cap}: name one (${holding.map((h) => `node.${cap}@${h.p.node_name}`).join(', ')})`, { tool_id: toolId, candidates: holding.map((h) => h.p.node_name) });
    }
    const { p, a } = holding[0]!;
    const known = knownCapability(a.id, a.version);
    if (!known) return new TyrumError('TYRUM_ERR_NODE_NOT_ALLOWLISTED', `${a.id}@${a.version} has no contract this gateway knows`, { tool_id: toolId, failed: 'allowlisted' });
    return { described: describe(toolId, p, a, known), pairing: p, allowed: a, known };
  }

  /** Approved pairings a selector names (its node name, or its device id; one indexed read), or all. */
  private candidates(selector: string | undefined): PairingRow[] {
    const repo = this.o.store.committed.pairings;
    if (selector === undefined) return repo.list('approved', 10_000);
    const p = repo.byName(selector) ?? repo.live(selector);
    return p?.state === 'approved' ? [p] : [];
  }
}

/** The task.execute payload a dispatch sends (the same on this replica and through another). */
export interface NodeTask {
  dispatch_id: string;
  capability: string;
  capability_version: string;
  args: Record<string, unknown>;
  timeout_ms: number;
}

/** A node's answer to a task, with the evidence it streamed meanwhile. */
export interface NodeAnswer {
  answer: PeerAnswer;
  streamed: { items: Array<Record<string, unknown>>; dropped: number };
}

/**
 * Sends `task` to the node's connection on this gateway and waits for its answer. Fails with
 * TYRUM_ERR_NODE_UNAVAILABLE (not connected here), TYRUM_ERR_NODE_NOT_ALLOWLISTED (the node no
 * longer advertises the approved definition), TYRUM_ERR_NODE_NOT_READY, or the session's
 * TYRUM_ERR_NODE_DISCONNECTED / TYRUM_ERR_TIMEOUT (with the evidence streamed so far).
 */
export async function sendToNode(connections: NodeConnections, pairing: PairingRow, allowed: AllowedCapability, task: NodeTask, signal?: AbortSignal): Promise<NodeAnswer> {
  const session = connections.paired(pairing.id);
  const peer = session?.peer;
  if (!session || !peer) throw nodeError('TYRUM_ERR_NODE_UNAVAILABLE', `node ${pairing.node_name} is not connected; nothing was sent`, pairing, { failed: 'connected' });
  // The node must still advertise the definition the operator allowed.
  const advertised = peer.capabilities.find((c) => c.id === allowed.id && c.version === allowed.version);
  if (!advertised || capabilityRef(advertised).definition_hash !== allowed.definition_hash) {
    throw nodeError('TYRUM_ERR_NODE_NOT_ALLOWLISTED', `node ${pairing.node_name} no longer advertises ${allowed.id}@${allowed.version} as approved; approve the pairing again`, pairing, { failed: 'allowlisted', reason: 'definition_changed' });
  }
  const ready = connections.readiness(pairing.id, allowed.id);
  if (ready !== true) throw nodeError('TYRUM_ERR_NODE_NOT_READY', `node ${pairing.node_name} does not report ${allowed.id} ready: ${ready}; nothing was sent`, pairing, { failed: 'ready', reason: ready });
  const dispatchId = task.dispatch_id;
  const streamed = connections.track(pairing.id, dispatchId);
  const request = session.request('task.execute', { ...task }, { timeoutMs: task.timeout_ms, requestId: dispatchId });
  try {
    const answer = await raceAbort(request, signal);
    return { answer, streamed: { items: streamed.items, dropped: streamed.dropped } };
  } catch (e) {
    // Cut off (disconnect, timeout): keep how far the node got with the failure.
    if (e instanceof TyrumError && streamed.items.length > 0) throw new TyrumError(e.code, e.message, { ...(e.details ?? {}), dispatch_id: dispatchId, streamed_evidence: streamed.items }, { cause: e });
    throw e;
  } finally {
    streamed.done();
  }
}

/** The node connections of other replicas (PostgreSQL), through the database (core/nodes/cluster.ts). */
export interface RemoteNodes {
  /** The replica holding a connection of this pairing, when no connection on this one does. */
  holder(pairingId: string): string | undefined;
  /** Hands `task` to that replica, which sends it to the node, and waits for the answer it writes back. */
  send(replica: string, pairing: PairingRow, allowed: AllowedCapability, task: NodeTask, signal?: AbortSignal): Promise<NodeAnswer>;
}

function describe(toolId: string, p: PairingRow, a: AllowedCapability, known: KnownCapability): DescribedTool & { idempotent: boolean } {
  const k = known.contract;
  return {
    entry: {
      tool_id: toolId,
      plugin_id: 'node',
      plugin_version: k.version,
      description: `${k.description} (node ${p.node_name}, ${p.trust_level ?? 'remote'})`,
      effect: a.read_only ? 'read_only' : 'state_changing',
      input_schema: known.input_schema,
      output_schema: known.output_schema,
      definition_hash: a.definition_hash,
      // Which node and which pairing: an approval binds to this, so it cannot run on another
      // node, nor on the same node after it was revoked and paired again.
      plugin_digest: sha256(canonicalJson({ device_id: p.device_id, pubkey: p.pubkey, pairing_id: p.id })),
      postcondition: null,
    },
    risks: [],
    rights: { egress: [], secrets: [] },
    idempotent: k.idempotent,
  };
}

/** Evidence a node reports is kept with the attempt; this much of it at most. */
export const NODE_EVIDENCE_MAX_BYTES = 64 * 1024;

/** Which node ran it and what it reported (an oversized report is replaced by its size). */
function evidenceOf(reported: unknown, dispatchId: string, p: PairingRow): Record<string, unknown> {
  const base = { dispatch_id: dispatchId, node: p.node_name, device_id: p.device_id, pairing_id: p.id };
  if (typeof reported !== 'object' || reported === null || Array.isArray(reported)) return { ...base, node_evidence: null };
  const bytes = Buffer.byteLength(JSON.stringify(reported));
  return { ...base, node_evidence: bytes <= NODE_EVIDENCE_MAX_BYTES ? reported : { dropped: true, bytes, limit: NODE_EVIDENCE_MAX_BYTES } };
}

function allowlist(p: PairingRow): AllowedCapability[] {
  return JSON.parse(p.allowlist) as AllowedCapability[];
}

function entryOf(d: DescribedTool): Omit<ToolEntry, 'postcondition'> {
  const { postcondition: _, ...entry } = d.entry;
  return entry;
}

/** A contract's compiled validators, once per built-in capability. */
type Validator = ReturnType<typeof compilePluginSchema>;
const VALIDATORS = new WeakMap<KnownCapability, { input: Validator; output: Validator }>();
function validators(k: KnownCapability): { input: Validator; output: Validator } {
  let v = VALIDATORS.get(k);
  if (!v) {
    v = { input: compilePluginSchema(k.input_schema, `${k.contract.id} input`), output: compilePluginSchema(k.output_schema, `${k.contract.id} output`) };
    VALIDATORS.set(k, v);
  }
  return v;
}

function checkArgs(toolId: string, k: KnownCapability, args: Record<string, unknown>): void {
  const input = validators(k).input;
  if (!input(args)) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: toIssues(input.errors) });
}

export function nodeError(code: 'TYRUM_ERR_NODE_NOT_READY' | 'TYRUM_ERR_NODE_UNAVAILABLE' | 'TYRUM_ERR_NODE_NOT_ALLOWLISTED' | 'TYRUM_ERR_NODE_REFUSED' | 'TYRUM_ERR_NODE_CAPABILITY_FAILED' | 'TYRUM_ERR_NODE_OUTPUT_INVALID', message: string, p: PairingRow, details: Record<string, unknown>): TyrumError {
  return new TyrumError(code, message, { node: p.node_name, pairing_id: p.id, ...details });
}


function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
