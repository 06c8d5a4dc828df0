/**
 * Implementations of the operations in the catalog (schemas/src/operations.ts). Every handler
 * receives a payload that has already passed its schema and an authorized peer; a test checks
 * that each non-handshake operation in the catalog has exactly one handler here.
 */
import type { OperationType } from '../../schemas/index.js';
import { listAudit, verifyAudit, type AuditLog, type CheckpointVerifier } from '../audit/index.js';
import { tokenInfo, type TokenService } from '../auth/tokens.js';
import type { Store } from '../store/index.js';
import type { PluginRegistry } from '../registry/plugins.js';
import type { PluginHost } from '../registry/host.js';
import type { PluginGrant, RiskFlag } from '../../schemas/index.js';
import type { Peer } from './session.js';

export interface HandlerServices {
  store: Store;
  tokens: TokenService;
  audit: AuditLog;
  verifier: CheckpointVerifier;
  checkpointPath: string;
  /** Called after a token is revoked so its live connections close at once. */
  onTokenRevoked(tokenId: string): void;
  plugins: PluginRegistry;
  host: PluginHost;
  /** Secret handles (never values). */
  secretHandles(): Array<{ name: string; version: number; destinations: string[]; created_at: number; rotated_at: number }>;
  now(): number;
}

const actor = (peer: Peer) => ({ kind: 'token', id: peer.token.id, device_id: peer.deviceId });

type Payload = Record<string, unknown>;
type Handler = (payload: Payload, peer: Peer) => Promise<Record<string, unknown>>;
export type Handlers = Record<Exclude<OperationType, 'connect.init' | 'connect.proof'>, Handler>;

/** Builds the handler table over the given services. */
export function createHandlers(s: HandlerServices): Handlers {
  return {
    ping: async () => ({ pong: true, server_time: new Date(s.now()).toISOString() }),

    'audit.list': async (p) => {
      const q = p as { after_seq?: number; limit?: number; type?: string };
      const entries = listAudit(s.store, q);
      const limit = q.limit ?? 100;
      return { entries, next_after_seq: entries.length === limit ? entries[entries.length - 1]!.seq : null };
    },

    'audit.verify': async () => {
      // Flush first so entries queued by this very session are part of what is verified.
      await s.audit.flush();
      const r = verifyAudit({ store: s.store, verifier: s.verifier, checkpointPath: s.checkpointPath });
      return {
        ok: r.ok,
        entries: r.entries,
        head_hash: r.entries === 0 ? null : r.head_hash,
        checkpoint_seq: r.checkpoint?.seq ?? null,
        first_bad_seq: r.first_bad?.seq ?? null,
        reason: r.reason ?? null,
      };
    },

    'token.create': async (p, peer) => {
      const q = p as { scopes: string[]; roles?: string[]; label?: string; ttl_seconds?: number };
      const created = await s.tokens.create({
        scopes: q.scopes,
        ...(q.roles !== undefined ? { roles: q.roles } : {}),
        ...(q.label !== undefined ? { label: q.label } : {}),
        ...(q.ttl_seconds !== undefined ? { ttlSeconds: q.ttl_seconds } : {}),
        createdBy: peer.token.id,
        maxScopes: peer.token.scopes,
      });
      await s.audit.append('token.created', { kind: 'token', id: peer.token.id }, { token_id: created.record.id, scopes: created.record.scopes, roles: created.record.roles, label: created.record.label, expires_at: created.record.expires_at });
      return { token: created.token, info: tokenInfo(created.record) };
    },

    'token.list': async () => ({ tokens: s.tokens.list().map(tokenInfo) }),

    'token.revoke': async (p, peer) => {
      const id = (p as { token_id: string }).token_id;
      const rec = s.tokens.revoke(id);
      await s.audit.append('token.revoked', { kind: 'token', id: peer.token.id }, { token_id: id });
      s.onTokenRevoked(id);
      return { token_id: id, revoked_at: new Date(rec.revoked_at ?? s.now()).toISOString() };
    },

    'plugin.list': async () => ({ plugins: s.plugins.list() }),
    'plugin.get': async (p) => s.plugins.get((p as { plugin_id: string }).plugin_id),
    'plugin.enable': async (p, peer) => ({ plugin: await s.plugins.enable((p as { plugin_id: string }).plugin_id, actor(peer)) }),
    'plugin.disable': async (p, peer) => ({ plugin: await s.plugins.disable((p as { plugin_id: string }).plugin_id, actor(peer)) }),
    'plugin.grant': async (p, peer) => {
      const q = p as { plugin_id: string; grant?: PluginGrant; all_requested?: boolean; accept_risks?: RiskFlag[] };
      const plugin = await s.plugins.grant(
        q.plugin_id,
        { ...(q.grant !== undefined ? { grant: q.grant } : {}), ...(q.all_requested !== undefined ? { allRequested: q.all_requested } : {}), ...(q.accept_risks !== undefined ? { acceptRisks: q.accept_risks } : {}) },
        actor(peer),
      );
      return { plugin };
    },
    'plugin.revoke': async (p, peer) => ({ plugin: await s.plugins.revoke((p as { plugin_id: string }).plugin_id, actor(peer)) }),

    'tool.list': async () => ({ tools: s.host.tools() }),
    'tool.invoke': async (p, peer) => {
      const q = p as { tool_id: string; args: Record<string, unknown> };
      return { ...(await s.host.invoke(q.tool_id, q.args, actor(peer))) };
    },

    'secret.list': async () => ({
      secrets: s.secretHandles().map((h) => ({ name: h.name, version: h.version, destinations: h.destinations, created_at: new Date(h.created_at).toISOString(), rotated_at: new Date(h.rotated_at).toISOString() })),
    }),
  };
}
