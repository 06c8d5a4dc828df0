/**
 * Plugin lifecycle over the store: install (quarantined: installed but disabled), upgrade with a
 * permission diff, the operator's grant (the second key), enable/disable, config, removal. Every
 * change is audited and announced as a `plugin.lifecycle` event. The running gateway and the CLI
 * both use this class on the same database; the gateway picks up the CLI's changes through
 * `PluginHost.reconcile()`.
 */
import { createHash } from 'node:crypto';
import { DEFAULT_TENANT, PluginGrant as PluginGrantSchema, type PluginGrant, type PluginManifest, type RiskFlag } from '../../schemas/index.js';
import { TyrumError } from '../errors/index.js';
import { validate } from '../protocol/validate.js';
import type { Store, PluginRecord, PendingDiffRecord } from '../store/index.js';
import type { AuditLog, AuditActor } from '../audit/index.js';
import { effectiveRights, grantAllRequested, permissionDiff, type EffectiveRights, type PermissionChange } from '../../manifests/capabilities.js';
import { installPluginFiles, removePluginFiles, validatePluginConfig, compareVersions } from '../../manifests/index.js';
import { loadConfig, type TrustedPublisher } from '../config/index.js';
import { readPluginForInstall } from './signature.js';

export type LifecycleAction = 'installed' | 'upgraded' | 'downgraded' | 'granted' | 'revoked' | 'enabled' | 'disabled' | 'configured' | 'removed';

export interface PluginRegistryOptions {
  store: Store;
  home: string;
  audit: AuditLog;
  /** Does a secret handle exist (config fields that are secrets accept only handles). */
  secretExists(name: string): boolean;
  emit?(type: 'plugin.lifecycle', payload: Record<string, unknown>): void;
  /** Called after any change, so the runtime can reload or unload sandboxes. */
  onChange?(pluginId: string): void;
  now?: () => number;
  /** Publishers whose signed archives install; default: `trusted_publishers` of the home's config.json. */
  trustedPublishers?: readonly TrustedPublisher[];
}

/** The wire view of a plugin (`PluginInfo`). */
export interface PluginInfo {
  id: string;
  version: string;
  name: string;
  description: string;
  publisher: string;
  state: 'disabled' | 'enabled';
  manifest_sha256: string;
  wasm_sha256: string;
  risk: RiskFlag[];
  tools: string[];
  grant: PluginGrant | null;
  effective: EffectiveRights;
  blockers: string[];
  /** What the installed version asks for beyond the granted one, until the operator grants again. */
  pending_upgrade: PendingUpgrade | null;
  installed_at: string;
  updated_at: string;
}

/** An upgrade's permission diff waiting for a new grant (it blocks enabling meanwhile). */
export interface PendingUpgrade {
  /**
   * The version the operator's grant was made for (for a grant made before schema v17, which did
   * not keep what it covered: the version before the first upgrade that asked for more).
   */
  from_version: string;
  to_version: string;
  /** What to_version asks for beyond from_version (older grants: the sum of the upgrades' diffs since). */
  diff: PermissionChange[];
  since: string;
}

export interface InstallResult {
  plugin: PluginInfo;
  action: 'installed' | 'upgraded' | 'downgraded' | 'unchanged';
  /** What the new version asks for beyond the old one (upgrades only). */
  diff: PermissionChange[];
}

/** An enabled plugin as the runtime needs it. */
export interface EnabledPlugin {
  record: PluginRecord;
  manifest: PluginManifest;
  effective: EffectiveRights;
  config: Record<string, unknown>;
}

export class PluginRegistry {
  private readonly now: () => number;

  constructor(private readonly o: PluginRegistryOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Installs or upgrades from a directory or archive. New plugins start disabled (quarantine). */
  async install(sourcePath: string, actor: AuditActor, opts: { allowDowngrade?: boolean } = {}): Promise<InstallResult> {
    // With trusted publishers configured only their signed archives install; a present signature is always checked.
    const { source: src, signature } = await readPluginForInstall(sourcePath, this.o.trustedPublishers ?? loadConfig(this.o.home).trustedPublishers);
    const m = src.manifest;
    const existing = this.o.store.plugins.get(m.id);
    let action: InstallResult['action'] = 'installed';
    let diff: PermissionChange[] = [];
    let state: PluginRecord['state'] = 'disabled';
    let pending: PendingDiffRecord | null = null;
    const at = this.stampAfter(existing?.updated_at);
    if (existing) {
      const prev = JSON.parse(existing.manifest) as PluginManifest;
      // Refuses a silent downgrade and a changed module under an unchanged version.
      const cmp = compareVersions(prev, m, { allowDowngrade: opts.allowDowngrade ?? false });
      if (cmp.kind === 'same') return { plugin: this.info(existing), action: 'unchanged', diff: [] };
      diff = cmp.diff;
      action = cmp.kind === 'upgrade' ? 'upgraded' : 'downgraded';
      pending = this.nextPendingDiff(existing, m, diff, at);
      // A version change asking for nothing new keeps its state; one asking for more (than the
      // version before, or than the grant covers) waits for a new grant.
      state = diff.length === 0 && !pending ? existing.state : 'disabled';
    }
    await installPluginFiles(this.o.home, src);
    const record: PluginRecord = {
      id: m.id,
      version: m.version,
      manifest: src.manifestBytes.toString('utf8'),
      manifest_sha256: src.manifestSha256,
      wasm_sha256: src.wasmSha256,
      source: sourcePath,
      state,
      installed_at: existing?.installed_at ?? at,
      updated_at: at,
    };
    this.o.store.tx(() => {
      this.o.store.plugins.upsert(record);
      if (pending) this.o.store.plugins.setPendingDiff(pending);
      else if (existing) this.o.store.plugins.clearPendingDiff(existing.id);
    });
    await this.changed(record, action, actor, {
      version: m.version,
      previous_version: existing?.version ?? null,
      manifest_sha256: src.manifestSha256,
      wasm_sha256: src.wasmSha256,
      permission_diff: diff,
      source: sourcePath,
      signed_by: signature ? { publisher: signature.publisher, public_key: signature.public_key } : null,
    });
    return { plugin: this.info(record), action, diff };
  }

  /** Installed plugins as `tenant` sees them (the host's view unless another tenant is named; see {@link tenantInfo}). */
  list(tenant: string = DEFAULT_TENANT): PluginInfo[] {
    return this.o.store.plugins.list().map((r) => (tenant === DEFAULT_TENANT ? this.info(r) : this.tenantInfo(tenant, r)));
  }

  get(id: string, tenant: string = DEFAULT_TENANT): { plugin: PluginInfo; manifest: PluginManifest } {
    const r = this.record(id);
    return { plugin: tenant === DEFAULT_TENANT ? this.info(r) : this.tenantInfo(tenant, r), manifest: JSON.parse(r.manifest) as PluginManifest };
  }

  /**
   * Replaces the grant. `allRequested` grants every requested capability; risks are accepted only
   * when named in `acceptRisks` (or `grant.accept_risks`): accepting a risk is always explicit.
   */
  async grant(id: string, input: { grant?: PluginGrant; allRequested?: boolean; acceptRisks?: RiskFlag[] }, actor: AuditActor, tenant: string = DEFAULT_TENANT): Promise<PluginInfo> {
    const r = this.record(id);
    const manifest = JSON.parse(r.manifest) as PluginManifest;
    const grant = this.checkedGrant(id, manifest, input);
    const grantedFor: GrantedFor = { version: manifest.version, requests: manifest.requests ?? {}, risk: manifest.risk ?? [] };
    const at = this.now();
    if (tenant !== DEFAULT_TENANT) {
      // A tenant's own grant: the plugin's row, state and the host's grant are untouched, and
      // nothing is announced to the host's clients; the audit entry names the tenant (its actor).
      this.o.store.tx(() => this.o.store.plugins.setTenantGrant(tenant, { plugin_id: id, grant_json: JSON.stringify(grant), granted_by: actorLabel(actor), granted_at: at, granted_for: JSON.stringify(grantedFor) }));
      await this.o.audit.append('plugin.granted', actor, { plugin_id: id, version: r.version, grant, effective: effectiveRights(manifest, grant) });
      return this.tenantInfo(tenant, this.record(id));
    }
    const pending = this.pendingUpgrade(id);
    this.o.store.tx(() => {
      // What this grant covers: later versions' permission diffs are computed against it.
      this.o.store.plugins.setGrant({ plugin_id: id, grant_json: JSON.stringify(grant), granted_by: actorLabel(actor), granted_at: at, granted_for: JSON.stringify(grantedFor) });
      // Granting is the operator's review of an upgrade's permission diff.
      this.o.store.plugins.clearPendingDiff(id);
      this.touch(id);
    });
    const effective = effectiveRights(manifest, grant);
    await this.changed(r, 'granted', actor, { grant, effective, ...(pending ? { reviewed_upgrade: pending } : {}) });
    return this.info(this.record(id));
  }

  /** A grant as given, checked: only what the manifest requests, risks accepted only explicitly and only if declared. */
  private checkedGrant(id: string, manifest: PluginManifest, input: { grant?: PluginGrant; allRequested?: boolean; acceptRisks?: RiskFlag[] }): PluginGrant {
    let grant: PluginGrant = input.allRequested ? { ...grantAllRequested(manifest), accept_risks: [] } : structuredClone(input.grant ?? {});
    if (input.allRequested && input.grant) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'give either a grant or all_requested, not both');
    const accept = [...new Set([...(grant.accept_risks ?? []), ...(input.acceptRisks ?? [])])];
    grant = { ...grant, accept_risks: accept };
    if (accept.length === 0) delete grant.accept_risks;
    const issues = validate(PluginGrantSchema, grant);
    if (issues.length > 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `invalid grant: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
    const undeclared = accept.filter((f) => !(manifest.risk ?? []).includes(f));
    if (undeclared.length > 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `plugin ${id} does not declare risk ${undeclared.join(', ')}; accept only declared risks`);
    return grant;
  }

  /** Withdraws the grant and disables the plugin; another tenant's revoke withdraws its own grant only. */
  async revoke(id: string, actor: AuditActor, tenant: string = DEFAULT_TENANT): Promise<PluginInfo> {
    const r = this.record(id);
    if (tenant !== DEFAULT_TENANT) {
      this.o.store.tx(() => this.o.store.plugins.deleteTenantGrant(tenant, id));
      await this.o.audit.append('plugin.revoked', actor, { plugin_id: id, version: r.version });
      return this.tenantInfo(tenant, this.record(id));
    }
    this.o.store.tx(() => {
      this.o.store.plugins.deleteGrant(id);
      this.touch(id, 'disabled');
    });
    await this.changed({ ...r, state: 'disabled' }, 'revoked', actor, {});
    return this.info(this.record(id));
  }

  /** Enables a plugin; refused (invalid_state) with the list of blockers while any remain. */
  async enable(id: string, actor: AuditActor): Promise<PluginInfo> {
    const r = this.record(id);
    const blockers = this.blockers(r);
    if (blockers.length > 0) {
      throw new TyrumError('TYRUM_ERR_INVALID_STATE', `plugin ${id} cannot be enabled: ${blockers.join('; ')}`, { blockers });
    }
    if (r.state === 'enabled') return this.info(r);
    this.o.store.tx(() => this.touch(id, 'enabled'));
    await this.changed({ ...r, state: 'enabled' }, 'enabled', actor, {});
    return this.info(this.record(id));
  }

  async disable(id: string, actor: AuditActor): Promise<PluginInfo> {
    const r = this.record(id);
    if (r.state === 'disabled') return this.info(r);
    this.o.store.tx(() => this.touch(id, 'disabled'));
    await this.changed({ ...r, state: 'disabled' }, 'disabled', actor, {});
    return this.info(this.record(id));
  }

  /** Validates (defaults applied, unknown keys and secret values refused) and stores the config. */
  async configure(id: string, config: unknown, actor: AuditActor): Promise<Record<string, unknown>> {
    const r = this.record(id);
    const manifest = JSON.parse(r.manifest) as PluginManifest;
    const validated = this.validateConfig(r, manifest, config);
    this.o.store.tx(() => {
      this.o.store.plugins.setConfig(id, JSON.stringify(validated), this.now());
      this.touch(id);
    });
    // Config values are recorded by shape only: the audit log keeps the keys, not the values.
    await this.changed(r, 'configured', actor, { keys: Object.keys(validated).sort() });
    return validated;
  }

  /** Removes the plugin, its grant, config, key-value data and files. */
  async remove(id: string, actor: AuditActor): Promise<void> {
    const r = this.record(id);
    this.o.store.tx(() => this.o.store.plugins.remove(id));
    await removePluginFiles(this.o.home, id);
    await this.changed(r, 'removed', actor, {});
  }

  /**
   * The lock: what is installed, pinned by digest, with the operator's grant. The database is the
   * only record; this renders it for review, diffing and archiving (`tyrum plugin lock`).
   */
  lock(): { lock_version: 1; plugins: Array<{ id: string; version: string; manifest_sha256: string; wasm_sha256: string; source: string; state: string; grant: PluginGrant | null; installed_at: string; updated_at: string }> } {
    return {
      lock_version: 1,
      plugins: this.o.store.plugins.list().map((r) => ({
        id: r.id,
        version: r.version,
        manifest_sha256: r.manifest_sha256,
        wasm_sha256: r.wasm_sha256,
        source: r.source,
        state: r.state,
        grant: this.grantOf(r.id),
        installed_at: new Date(r.installed_at).toISOString(),
        updated_at: new Date(r.updated_at).toISOString(),
      })),
    };
  }

  /** Ids of enabled plugins: one query, no manifest parsing (which servers and tools may exist). */
  enabledIds(): Set<string> {
    return new Set(this.o.store.plugins.list().filter((r) => r.state === 'enabled').map((r) => r.id));
  }

  /** Enabled plugins with their effective rights and validated config (for the runtime). */
  enabled(): EnabledPlugin[] {
    const out: EnabledPlugin[] = [];
    for (const record of this.o.store.plugins.list()) {
      const p = this.asEnabled(record);
      if (p) out.push(p);
    }
    return out;
  }

  /** One plugin as {@link enabled} gives it, read now; undefined unless installed and enabled. */
  enabledPlugin(id: string): EnabledPlugin | undefined {
    const record = this.o.store.plugins.get(id);
    return record ? this.asEnabled(record) : undefined;
  }

  /** An installed plugin's row with its manifest, grant and config, if it is enabled. */
  asEnabled(record: PluginRecord): EnabledPlugin | undefined {
    if (record.state !== 'enabled') return undefined;
    const manifest = JSON.parse(record.manifest) as PluginManifest;
    return { record, manifest, effective: effectiveRights(manifest, this.grantOf(record.id)), config: this.storedConfig(record.id) };
  }

  /**
   * A tenant's rights to an installed plugin (a tenant other than the default): its own grant and
   * the effective rights it gives, and why its calls are refused now (empty: the plugin's tools
   * are the tenant's to call under `effective`). Undefined if the plugin is not installed.
   */
  tenantRights(tenant: string, id: string): { record: PluginRecord; manifest: PluginManifest; grant: PluginGrant | null; effective: EffectiveRights; blockers: string[]; pending: PendingUpgrade | null; granted_at: number | null } | undefined {
    const record = this.o.store.plugins.get(id);
    if (!record) return undefined;
    const manifest = JSON.parse(record.manifest) as PluginManifest;
    const g = this.o.store.plugins.getTenantGrant(tenant, id);
    const grant = g ? (JSON.parse(g.grant_json) as PluginGrant) : null;
    const effective = effectiveRights(manifest, grant);
    // As the host's grant: a version asking for more than the grant covered waits for the tenant's new grant.
    let pending: PendingUpgrade | null = null;
    if (g?.granted_for) {
      const base = JSON.parse(g.granted_for) as GrantedFor;
      const beyond = permissionDiff(base, manifest);
      if (beyond.length > 0) pending = { from_version: base.version, to_version: manifest.version, diff: beyond, since: new Date(Math.max(record.updated_at, g.granted_at)).toISOString() };
    }
    const blockers: string[] = [];
    if (record.state !== 'enabled') blockers.push('not enabled by the host operator');
    if (!grant) blockers.push(`not granted (plugin.grant ${id})`);
    if (pending) blockers.push(`upgrade ${pending.from_version} → ${pending.to_version} asks for more (${pending.diff.map((d) => `${d.kind} ${d.change}: ${d.detail}`).join('; ')}); review it and grant again`);
    if (grant && effective.missing_risks.length > 0) blockers.push(`risk not accepted: ${effective.missing_risks.join(', ')} (grant with accept_risks)`);
    return { record, manifest, grant, effective, blockers, pending, granted_at: g?.granted_at ?? null };
  }

  /**
   * An installed plugin as a tenant other than the default sees it: the plugin's public facts
   * (id, version, manifest facts, digests, risks, tools, whether the host enabled it) and the
   * tenant's own grant, effective rights and blockers; nothing of the host's grant, config or
   * key-value state. `updated_at` is the tenant's last grant (else the install time).
   */
  tenantInfo(tenant: string, r: PluginRecord): PluginInfo {
    const t = this.tenantRights(tenant, r.id)!;
    return {
      ...publicFacts(r, t.manifest),
      grant: t.grant,
      effective: t.effective,
      blockers: t.blockers,
      pending_upgrade: t.pending,
      installed_at: new Date(r.installed_at).toISOString(),
      updated_at: new Date(t.granted_at ?? r.installed_at).toISOString(),
    };
  }

  /** Why a plugin cannot be enabled now (empty: it can). */
  blockers(r: PluginRecord): string[] {
    const manifest = JSON.parse(r.manifest) as PluginManifest;
    const eff = effectiveRights(manifest, this.grantOf(r.id));
    const out: string[] = [];
    // The grant is the operator's key: even a plugin that asks for nothing must be granted.
    if (!this.o.store.plugins.getGrant(r.id)) out.push(`not granted (tyrum plugin grant ${r.id} ...)`);
    const pending = this.pendingUpgrade(r.id);
    if (pending) out.push(`upgrade ${pending.from_version} → ${pending.to_version} asks for more (${pending.diff.map((d) => `${d.kind} ${d.change}: ${d.detail}`).join('; ')}); review it and grant again`);
    if (eff.missing_risks.length > 0) out.push(`risk not accepted: ${eff.missing_risks.join(', ')} (grant with accept_risks)`);
    try {
      this.validateConfig(r, manifest, this.storedConfig(r.id));
    } catch (e) {
      out.push(`config: ${(e as Error).message}`);
    }
    return out;
  }

  /** A stable fingerprint of everything that shapes a plugin's sandbox (digest, rights, config). */
  fingerprint(p: EnabledPlugin): string {
    return createHash('sha256').update(JSON.stringify([p.record.wasm_sha256, p.record.manifest_sha256, p.effective, p.config])).digest('hex').slice(0, 16);
  }

  /**
   * Every change to a plugin (its state, grant or config) moves its row's `updated_at` forward,
   * strictly, in the transaction that makes the change, so {@link pluginStamp} differs after any
   * change, even two in the same millisecond: a running gateway compares stamps to find what
   * another process (the CLI) changed without re-reading every plugin.
   */
  private touch(id: string, state?: PluginRecord['state']): void {
    const cur = this.record(id);
    this.o.store.plugins.setState(id, state ?? cur.state, this.stampAfter(cur.updated_at));
  }

  private stampAfter(previous: number | undefined): number {
    return previous === undefined ? this.now() : Math.max(this.now(), previous + 1);
  }

  private validateConfig(r: PluginRecord, manifest: PluginManifest, config: unknown): Record<string, unknown> {
    const grant = effectiveRights(manifest, this.grantOf(r.id));
    return validatePluginConfig(manifest, config, {
      secretExists: (name) => this.o.secretExists(name),
      secretGranted: (name) => grant.secrets.some((s) => s.name === name),
    });
  }

  /**
   * The pending permission diff after a version change of a plugin (null: none). For a grant that
   * kept what it covered (migration 17) it is recomputed on every version change against the
   * manifest granted: what the new version asks for beyond it, from the granted version, and none
   * when nothing exceeds the grant (a downgrade back to the granted version clears it). For an
   * older grant, whose coverage was not kept, the diffs of the version changes since the version
   * before the first one that asked for more are summed (never cleared but by a new grant). A
   * plugin never granted has none: its whole request awaits a first grant.
   */
  private nextPendingDiff(previous: PluginRecord, next: PluginManifest, diff: PermissionChange[], at: number): PendingDiffRecord | null {
    const grant = this.o.store.plugins.getGrant(previous.id);
    const cur = this.o.store.plugins.getPendingDiff(previous.id);
    if (grant?.granted_for) {
      const base = JSON.parse(grant.granted_for) as GrantedFor;
      const beyond = permissionDiff(base, next);
      if (beyond.length === 0) return null;
      return { plugin_id: previous.id, from_version: base.version, to_version: next.version, diff_json: JSON.stringify(beyond), created_at: at };
    }
    if (diff.length === 0 && !cur) return null;
    if (!cur && !grant) return null;
    const merged = cur ? (JSON.parse(cur.diff_json) as PermissionChange[]) : [];
    for (const d of diff) if (!merged.some((x) => x.kind === d.kind && x.change === d.change && x.detail === d.detail)) merged.push(d);
    return { plugin_id: previous.id, from_version: cur?.from_version ?? previous.version, to_version: next.version, diff_json: JSON.stringify(merged), created_at: at };
  }

  private pendingUpgrade(id: string): PendingUpgrade | null {
    const p = this.o.store.plugins.getPendingDiff(id);
    return p ? { from_version: p.from_version, to_version: p.to_version, diff: JSON.parse(p.diff_json) as PermissionChange[], since: new Date(p.created_at).toISOString() } : null;
  }

  private storedConfig(id: string): Record<string, unknown> {
    const raw = this.o.store.plugins.getConfig(id);
    return raw === undefined ? {} : (JSON.parse(raw) as Record<string, unknown>);
  }

  private grantOf(id: string): PluginGrant | null {
    const g = this.o.store.plugins.getGrant(id);
    return g ? (JSON.parse(g.grant_json) as PluginGrant) : null;
  }

  private record(id: string): PluginRecord {
    const r = this.o.store.plugins.get(id);
    if (!r) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no plugin ${id} is installed`);
    return r;
  }

  info(r: PluginRecord): PluginInfo {
    const m = JSON.parse(r.manifest) as PluginManifest;
    const grant = this.grantOf(r.id);
    return {
      ...publicFacts(r, m),
      grant,
      effective: effectiveRights(m, grant),
      blockers: this.blockers(r),
      pending_upgrade: this.pendingUpgrade(r.id),
      installed_at: new Date(r.installed_at).toISOString(),
      updated_at: new Date(r.updated_at).toISOString(),
    };
  }

  private async changed(r: PluginRecord, action: LifecycleAction, actor: AuditActor, data: Record<string, unknown>): Promise<void> {
    await this.o.audit.append(`plugin.${action}`, actor, { plugin_id: r.id, version: r.version, ...data });
    this.o.emit?.('plugin.lifecycle', { plugin_id: r.id, version: r.version, action, state: action === 'removed' ? 'removed' : r.state });
    this.o.onChange?.(r.id);
  }
}

/** What anyone who may see a plugin sees of it, host or tenant: its identity, manifest facts, digests, risks and tools. */
function publicFacts(r: PluginRecord, m: PluginManifest): Pick<PluginInfo, 'id' | 'version' | 'name' | 'description' | 'publisher' | 'state' | 'manifest_sha256' | 'wasm_sha256' | 'risk' | 'tools'> {
  return {
    id: r.id,
    version: r.version,
    name: m.name,
    description: m.description,
    publisher: m.publisher,
    state: r.state,
    manifest_sha256: r.manifest_sha256,
    wasm_sha256: r.wasm_sha256,
    risk: m.risk ?? [],
    tools: m.contributes.tools.map((t) => `${m.id}.${t.id}`),
  };
}

/** What a grant covered: the version granted and what it asked for (plugin_grants.granted_for). */
interface GrantedFor {
  version: string;
  requests: PluginManifest['requests'];
  risk: PluginManifest['risk'];
}

/**
 * What identifies one state of an installed plugin's row: it changes with every lifecycle change
 * (see PluginRegistry's `touch`), so equal stamps mean nothing about the plugin changed.
 */
export function pluginStamp(r: Pick<PluginRecord, 'state' | 'version' | 'manifest_sha256' | 'wasm_sha256' | 'updated_at'>): string {
  return `${r.state}|${r.version}|${r.manifest_sha256}|${r.wasm_sha256}|${r.updated_at}`;
}

function actorLabel(a: AuditActor): string {
  return a.kind === 'token' ? `token:${String(a.id)}` : a.kind;
}
