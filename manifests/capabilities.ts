/**
 * The two-key model, as pure functions: a plugin's effective rights are the intersection of what
 * its manifest requests and what the operator granted. A grant can narrow a request, never widen
 * it; a request without a grant gives nothing (memory and time fall back to safe defaults).
 *
 * A request for host "*" (a plugin whose destination is the operator's choice) matches the
 * exact hosts the grant names, within the requested scheme, port and methods when given; a
 * secret requested for destinations ["*"] may go to the destinations the grant names (which it
 * must then name explicitly). "*" itself never appears in effective rights.
 */
import type { EgressRequest, EgressRule, PluginGrant, PluginManifest, PluginRequests, RiskFlag } from '../schemas/index.js';
import { destinationHost } from '../core/secrets/destination.js';

/** Budgets every plugin gets without asking. */
export const DEFAULT_MEMORY_PAGES = 256; // 16 MiB
export const DEFAULT_TIMEOUT_MS = 5_000;

/** An egress rule with every default filled in. */
export interface NormalizedEgress {
  host: string;
  port: number;
  scheme: 'https' | 'http';
  methods: string[];
}

export interface EffectiveRights {
  egress: NormalizedEgress[];
  /** Secret handles the plugin may name, each with the destinations (bare hosts: https:443; or origins) its value may be sent to. */
  secrets: Array<{ name: string; destinations: string[] }>;
  kv: { quota_bytes: number } | null;
  memory: { max_pages: number };
  time: { timeout_ms: number };
  /** Risk flags declared by the manifest and accepted by the operator. */
  accepted_risks: RiskFlag[];
  /** Risk flags declared by the manifest and not (yet) accepted: the plugin cannot be enabled. */
  missing_risks: RiskFlag[];
}

export function normalizeEgress(r: EgressRule | EgressRequest): NormalizedEgress {
  const scheme = r.scheme ?? 'https';
  return { host: r.host.toLowerCase(), port: r.port ?? (scheme === 'https' ? 443 : 80), scheme, methods: [...(r.methods ?? ['GET'])].sort() };
}

const sameTarget = (a: NormalizedEgress, b: NormalizedEgress) => a.host === b.host && a.port === b.port && a.scheme === b.scheme;

/** The intersection of a manifest's requests and an operator's grant. */
export function effectiveRights(manifest: Pick<PluginManifest, 'requests' | 'risk'>, grant: PluginGrant | null): EffectiveRights {
  const req: PluginRequests = manifest.requests ?? {};
  const g: PluginGrant = grant ?? {};
  const granted = (g.egress ?? []).map(normalizeEgress);
  const egress: NormalizedEgress[] = [];
  const add = (rule: NormalizedEgress) => {
    const same = egress.find((x) => sameTarget(x, rule));
    if (same) same.methods = [...new Set([...same.methods, ...rule.methods])].sort();
    else egress.push(rule);
  };
  for (const raw of req.egress ?? []) {
    if (raw.host === '*') {
      // Operator-chosen hosts: each granted rule, narrowed to what the request allows.
      const wanted = raw.methods ?? ['GET'];
      for (const x of granted) {
        if (raw.scheme !== undefined && x.scheme !== raw.scheme) continue;
        if (raw.port !== undefined && x.port !== raw.port) continue;
        const methods = x.methods.filter((m) => wanted.includes(m as (typeof wanted)[number]));
        if (methods.length > 0) add({ ...x, methods });
      }
      continue;
    }
    const r = normalizeEgress(raw);
    const methods = r.methods.filter((m) => granted.some((x) => sameTarget(x, r) && x.methods.includes(m)));
    if (methods.length > 0) add({ ...r, methods });
  }
  const secrets: EffectiveRights['secrets'] = [];
  for (const s of req.secrets ?? []) {
    const gs = (g.secrets ?? []).find((x) => x.name === s.name);
    if (!gs) continue;
    const requested = s.destinations.map((d) => d.toLowerCase());
    const grantedDest = gs.destinations?.map((x) => x.toLowerCase());
    // "*" requests take exactly the grant's destinations; a grant without destinations gives none.
    // A grant may pin a requested host to an origin (core/secrets/destination.ts: a bare host is
    // https on port 443 only; `http://host:port` names plain http or another port), never add a host.
    const destinations = requested.includes('*')
      ? [...new Set([...(grantedDest ?? []), ...requested.filter((d) => d !== '*' && grantedDest === undefined)])]
      : grantedDest === undefined
        ? requested
        : grantedDest.filter((d) => requested.includes(destinationHost(d) ?? ''));
    if (destinations.length > 0) secrets.push({ name: s.name, destinations });
  }
  const kv = req.kv && g.kv ? { quota_bytes: Math.min(req.kv.quota_bytes, g.kv.quota_bytes) } : null;
  const memory = { max_pages: Math.min(req.memory?.max_pages ?? DEFAULT_MEMORY_PAGES, g.memory?.max_pages ?? DEFAULT_MEMORY_PAGES) };
  const time = { timeout_ms: Math.min(req.time?.timeout_ms ?? DEFAULT_TIMEOUT_MS, g.time?.timeout_ms ?? DEFAULT_TIMEOUT_MS) };
  const declared = manifest.risk ?? [];
  const accepted = declared.filter((r) => (g.accept_risks ?? []).includes(r));
  return { egress, secrets, kv, memory, time, accepted_risks: accepted, missing_risks: declared.filter((r) => !accepted.includes(r)) };
}

/** A grant of exactly everything the manifest requests, accepting its declared risks. */
export function grantAllRequested(manifest: Pick<PluginManifest, 'requests' | 'risk'>): PluginGrant {
  const req = manifest.requests ?? {};
  const grant: PluginGrant = {};
  // "*" requests cannot be granted wholesale: the operator names the hosts (grant --egress/--secret).
  const exact = (req.egress ?? []).filter((r): r is EgressRule => r.host !== '*');
  if (exact.length > 0) grant.egress = exact.map((r) => ({ ...r }));
  const secrets = (req.secrets ?? []).map((s) => ({ name: s.name, destinations: s.destinations.filter((d) => d !== '*') })).filter((s) => s.destinations.length > 0);
  if (secrets.length > 0) grant.secrets = secrets;
  if (req.kv) grant.kv = { ...req.kv };
  if (req.memory) grant.memory = { ...req.memory };
  if (req.time) grant.time = { ...req.time };
  if (manifest.risk && manifest.risk.length > 0) grant.accept_risks = [...manifest.risk];
  return grant;
}

/** The risk flags a manifest must declare given what it requests and contributes. */
export function impliedRisks(manifest: Pick<PluginManifest, 'requests' | 'contributes'>): RiskFlag[] {
  const out: RiskFlag[] = [];
  if ((manifest.requests?.egress ?? []).length > 0) out.push('network');
  if ((manifest.requests?.secrets ?? []).length > 0) out.push('secrets');
  if (manifest.requests?.kv) out.push('storage');
  if (manifest.contributes.tools.some((t) => t.effect === 'state_changing')) out.push('state_changing');
  return out;
}

/** One line of a permission diff between two versions' requests. */
export interface PermissionChange {
  kind: 'egress' | 'secret' | 'kv' | 'memory' | 'time' | 'risk';
  change: 'added' | 'widened';
  detail: string;
}

/**
 * What `next` asks for beyond `prev`: new hosts or methods, new secrets or destinations, more
 * storage, memory or time, new risk flags. Empty means the upgrade needs no new grant.
 */
export function permissionDiff(prev: Pick<PluginManifest, 'requests' | 'risk'>, next: Pick<PluginManifest, 'requests' | 'risk'>): PermissionChange[] {
  const out: PermissionChange[] = [];
  const p = prev.requests ?? {};
  const n = next.requests ?? {};
  const pe = (p.egress ?? []).map(normalizeEgress);
  for (const r of (n.egress ?? []).map(normalizeEgress)) {
    const old = pe.find((x) => sameTarget(x, r));
    const label = r.host === '*' ? 'hosts the operator names' : `${r.scheme}://${r.host}:${r.port}`;
    if (!old) out.push({ kind: 'egress', change: 'added', detail: `${label} ${r.methods.join(',')}` });
    else {
      const more = r.methods.filter((m) => !old.methods.includes(m));
      if (more.length > 0) out.push({ kind: 'egress', change: 'widened', detail: `${label} +${more.join(',')}` });
    }
  }
  for (const s of n.secrets ?? []) {
    const old = (p.secrets ?? []).find((x) => x.name === s.name);
    if (!old) out.push({ kind: 'secret', change: 'added', detail: `${s.name} -> ${s.destinations.join(',')}` });
    else {
      const more = s.destinations.filter((d) => !old.destinations.includes(d));
      if (more.length > 0) out.push({ kind: 'secret', change: 'widened', detail: `${s.name} +${more.join(',')}` });
    }
  }
  if (n.kv && (!p.kv || n.kv.quota_bytes > p.kv.quota_bytes)) out.push({ kind: 'kv', change: p.kv ? 'widened' : 'added', detail: `quota ${n.kv.quota_bytes} bytes` });
  const pm = p.memory?.max_pages ?? DEFAULT_MEMORY_PAGES;
  if (n.memory && n.memory.max_pages > pm) out.push({ kind: 'memory', change: 'widened', detail: `${pm} -> ${n.memory.max_pages} pages` });
  const pt = p.time?.timeout_ms ?? DEFAULT_TIMEOUT_MS;
  if (n.time && n.time.timeout_ms > pt) out.push({ kind: 'time', change: 'widened', detail: `${pt} -> ${n.time.timeout_ms} ms` });
  for (const r of next.risk ?? []) if (!(prev.risk ?? []).includes(r)) out.push({ kind: 'risk', change: 'added', detail: r });
  return out;
}
