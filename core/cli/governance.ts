/**
 * `tyrum policy ...`, `tyrum approvals ...` and `tyrum run ...`. They work on the gateway home
 * directly (like token and plugin commands): an approval resolved here is picked up by a running
 * gateway within a second, and resolving one while the gateway is down works too — the run resumes
 * when it starts.
 */
import { TyrumError } from '../errors/index.js';
import { parseTtl } from '../auth/tokens.js';
import { isoTimes } from '../util/iso-times.js';
import { parse, need, subcommandError } from './args.js';
import { cliActor as who, withHome, withHomeCore } from './home.js';
import type { Io } from './io.js';



function jsonArg(text: string | undefined, name: string): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--${name} must be a JSON object`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--${name} must be a JSON object`);
  return v as Record<string, unknown>;
}

const POLICY_USAGE = `usage:
  tyrum policy show [--json]                          the active bundle, its snapshot id, history and overrides
  tyrum policy set FILE                               activate a bundle (a new content-addressed snapshot)
  tyrum policy explain TOOL_ID [--args JSON]          the decision for a call and the rules that made it
  tyrum policy override-revoke ID
  --tenant T (show, set, explain, override-revoke): tenant T's own bundle and overrides, which only
  tighten the host's (docs/tenancy.md); without it, the host's`;

export async function policyCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, args: { type: 'string' }, tenant: { type: 'string' } }, 1);
  if (values.help || sub === '--help') return (io.out(POLICY_USAGE), 0);
  const { readBundleFile, policyCall } = await import('../policy/index.js');
  const { argsHash } = await import('../approvals/binding.js');
  return withHome(values.home, async (svc) => {
    const tenant = values.tenant ?? 'default';
    if (svc.store.tenants.get(tenant) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no tenant "${tenant}" (tyrum tenant list)`, { tenant });
    /** Audit data of a change to a tenant's policy names the tenant; the host's reads as before. */
    const ofTenant = tenant === 'default' ? {} : { tenant };
    switch (sub) {
      case 'show': {
        if (tenant !== 'default') {
          const own = svc.policy.tenantActive(tenant);
          const out = { tenant, snapshot_id: own?.id ?? null, bundle: own?.bundle ?? null, history: isoTimes(svc.policy.history(10, tenant)), overrides: isoTimes(svc.policy.overrides(tenant)), host_snapshot_id: svc.policy.active().id };
          const head = own === null ? `tenant ${tenant}: no bundle of its own` : `tenant ${tenant}: active snapshot ${own.id}\n${JSON.stringify(own.bundle, null, 2)}`;
          io.out(values.json ? JSON.stringify(out) : `${head}\nthe host's policy ${out.host_snapshot_id} applies as well\noverrides: ${out.overrides.length === 0 ? 'none' : ''}${out.overrides.map((o) => `\n  ${o.id} ${o.tool_id} ${o.status}`).join('')}`);
          return 0;
        }
        const a = svc.policy.active();
        const out = { snapshot_id: a.id, bundle: a.bundle, history: isoTimes(svc.policy.history(10)), overrides: isoTimes(svc.policy.overrides()) };
        io.out(values.json ? JSON.stringify(out) : `active snapshot ${a.id}\n${JSON.stringify(a.bundle, null, 2)}\noverrides: ${out.overrides.length === 0 ? 'none' : ''}${out.overrides.map((o) => `\n  ${o.id} ${o.tool_id} ${o.status}`).join('')}`);
        return 0;
      }
      case 'set': {
        const file = need(positionals[0], 'FILE', 'tyrum policy set FILE');
        const r = svc.policy.set(readBundleFile(file), `cli:${who().user}`, file, tenant);
        svc.audit.appendSync('policy.set', who(), { snapshot_id: r.id, changed: r.changed, source: file, ...ofTenant });
        io.out(values.json ? JSON.stringify({ snapshot_id: r.id, changed: r.changed }) : `${r.changed ? 'activated' : 'already active:'} ${r.id}`);
        return 0;
      }
      case 'explain': {
        const toolId = need(positionals[0], 'TOOL_ID', 'tyrum policy explain TOOL_ID [--args JSON]');
        const args = jsonArg(values.args, 'args');
        // Describe the tool from the registry (its effect, risks and rights) without starting sandboxes.
        const p = svc.plugins.enabled().find((x) => toolId.startsWith(`${x.record.id}.`) && x.manifest.contributes.tools.some((t) => `${x.record.id}.${t.id}` === toolId));
        const tool = p?.manifest.contributes.tools.find((t) => `${p.record.id}.${t.id}` === toolId);
        // An approved MCP tool: its effect is the one the operator approved (annotations are not trusted).
        const m = toolId.startsWith('mcp.') ? svc.mcp.served(new Set(svc.plugins.enabled().map((x) => x.record.id))).find((x) => x.tool_id === toolId) : undefined;
        const entry = m ? { plugin_id: 'mcp', effect: m.effect } : p && tool ? { plugin_id: p.record.id, effect: tool.effect } : undefined;
        // Another tenant's calls are decided on the rights of its own grant of the plugin (none: no rights).
        const rights = p && tenant !== 'default' ? svc.plugins.tenantRights(tenant, p.record.id)?.effective : p?.effective;
        const call = policyCall(toolId, entry, p && rights ? { risks: p.manifest.risk ?? [], rights } : m ? { risks: [], rights: m.rights } : null, args ? argsHash(args) : null);
        const e = svc.policy.explain(call, undefined, tenant);
        io.out(values.json ? JSON.stringify(e) : e.text);
        return 0;
      }
      case 'override-revoke': {
        const id = need(positionals[0], 'ID', 'tyrum policy override-revoke ID');
        const r = svc.policy.revokeOverride(id, tenant);
        svc.audit.appendSync('policy.override_revoked', who(), { override_id: id, changed: r.changed, ...ofTenant });
        io.out(`${r.changed ? 'revoked' : 'already revoked:'} ${id}`);
        return 0;
      }
      default:
        throw subcommandError('policy', sub);
    }
  });
}

const APPROVALS_USAGE = `usage:
  tyrum approvals list [--all] [--json]                 pending approvals (--all: every state)
  tyrum approvals approve ID [--always [--expires 30d]] [--reason R]   approve once (or always: a narrow policy override)
  tyrum approvals deny ID [--reason R]`;

export async function approvalsCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, all: { type: 'boolean' }, always: { type: 'boolean' }, expires: { type: 'string' }, reason: { type: 'string' } }, 1);
  if (values.expires !== undefined && !values.always) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--expires applies to approve --always only');
  const ttl = values.expires === undefined ? undefined : parseTtl(values.expires);
  if (values.help || sub === '--help') return (io.out(APPROVALS_USAGE), 0);
  if (sub === 'list') {
    // Listing needs only the home's core: no plugin, policy or MCP code is loaded for it.
    return withHomeCore(values.home, async (svc) => {
      svc.approvals.expireDue();
      const list = isoTimes(svc.approvals.list(values.all ? {} : { state: 'pending' }));
      if (values.json) io.out(JSON.stringify({ approvals: list }));
      else {
        io.out(['ID', 'STATE', 'TOOL', 'RUN', 'EXPIRES', 'ARGS'].join('\t'));
        for (const a of list) io.out([a.id, a.state, a.tool_id, a.run_id ?? '-', String(a.expires_at), JSON.stringify(a.args)].join('\t'));
      }
      return 0;
    });
  }
  return withHome(values.home, async (svc) => {
    switch (sub) {
      case 'approve':
      case 'deny': {
        const id = need(positionals[0], 'ID', `tyrum approvals ${sub} ID`);
        if (sub === 'deny' && values.always) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--always applies to approve only');
        const r = await svc.resolveApproval(
          id,
          { decision: sub === 'approve' ? 'approved' : 'denied', ...(values.reason !== undefined ? { reason: values.reason } : {}), ...(values.always ? { mode: 'always' as const } : {}), ...(ttl !== undefined ? { overrideTtlMs: ttl * 1000 } : {}) },
          who(),
        );
        const override = r.override ? ` (override ${r.override.id}: later calls of ${r.override.tool_id} need no approval unless a rule denies them)` : '';
        io.out(values.json ? JSON.stringify({ approval: isoTimes(r.approval) }) : `${r.approval.state} ${r.approval.id}${override}`);
        return 0;
      }
      default:
        throw subcommandError('approvals', sub);
    }
  });
}
