/**
 * `tyrum plugin ...`: install (quarantined), list, info, grant, revoke, enable, disable, config,
 * remove. Works on the gateway home directly, like `tyrum token`; a running gateway picks the
 * changes up within a second.
 */
import { readFileSync } from 'node:fs';
import { TyrumError } from '../errors/index.js';
import { RISK_FLAGS, type PluginGrant, type RiskFlag, type EgressRule, type PluginManifest } from '../../schemas/index.js';
import type { PluginInfo } from '../registry/plugins.js';
import { parse, listArg, need, subcommandError } from './args.js';
import { cliActor as actor, withHome, intArg } from './home.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum plugin install PATH [--allow-downgrade] [--json]    install from a plugin directory or .tgz archive (starts disabled)
  tyrum plugin list [--json]
  tyrum plugin lock                                         print the lock: ids, versions, digests and grants (JSON)
  tyrum plugin info ID [--json]
  tyrum plugin grant ID [--all-requested] [--grant-file F] [--egress URL[=METHODS]]... [--secret NAME[=DEST,...]]...
                        [--kv BYTES] [--memory PAGES] [--timeout MS] [--accept-risk FLAG,...]
                        (DEST: a requested host, meaning https on port 443, or an origin on it such as
                        http://127.0.0.1:8080; a secret goes only to origins both this grant and its
                        own --destinations name)
  tyrum plugin revoke ID                                    withdraw the grant and disable
  tyrum plugin enable ID | disable ID
  tyrum plugin config ID [--set KEY=VALUE]... [--set-json KEY=JSON]... [--file F] [--show]
  tyrum plugin remove ID

Authoring (see docs/plugin-authors.md):
  tyrum plugin new NAME [--kind tool|channel] [--lang assemblyscript|c] [--dir DIR]   scaffold a working plugin
  tyrum plugin build [DIR] [--json]                         compile, check exports/imports/memory, write the digest
  tyrum plugin types [DIR] [--out DIR] [--no-assembly]      TypeScript types and AssemblyScript helpers from the schemas
  tyrum plugin test [DIR] [--json]                          run tests/*.test.json in the gateway's sandbox and budgets
  tyrum plugin pack [DIR] [--out FILE]                      a deterministic .tgz of manifest + wasm
  tyrum plugin keygen --out KEYFILE                         an Ed25519 publisher key; prints the public key
  tyrum plugin sign ARCHIVE --key KEYFILE                   writes ARCHIVE.sig`;



/** `https://api.example.com:8443=GET,POST` → an egress rule. */
export function parseEgressFlag(text: string): EgressRule {
  const [urlText, methodsText] = text.split('=', 2) as [string, string | undefined];
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--egress "${text}": expected a URL like https://api.example.com[:port][=GET,POST]`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--egress "${text}": only http and https`);
  if (url.pathname !== '/' || url.search || url.username) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--egress "${text}": give scheme, host and port only (grants are per host, not per path)`);
  const rule: EgressRule = { host: url.hostname.replace(/^\[|\]$/g, ''), scheme: url.protocol === 'https:' ? 'https' : 'http' };
  if (url.port) rule.port = Number(url.port);
  if (methodsText) rule.methods = listArg(methodsText.toUpperCase()) as EgressRule['methods'];
  return rule;
}

function riskList(v: string | undefined): RiskFlag[] {
  const list = listArg(v) ?? [];
  const bad = list.find((r) => !(RISK_FLAGS as readonly string[]).includes(r));
  if (bad) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown risk flag "${bad}" (known: ${RISK_FLAGS.join(', ')})`);
  return list as RiskFlag[];
}


/**
 * What to run after installing, complete and correct for this plugin: the secrets it uses, a grant
 * that gives it what it needs (explicit --egress/--secret flags when it asks for hosts the operator
 * names, since --all-requested grants no network then), the configuration its schema requires, and
 * enable. One line when `--all-requested` and enable are all it takes.
 */
export function installHints(m: PluginManifest): string[] {
  const id = m.id;
  const req = m.requests ?? {};
  const risks = (m.risk ?? []).length > 0 ? ` --accept-risk ${(m.risk ?? []).join(',')}` : '';
  const named = (req.egress ?? []).some((e) => e.host === '*') || (req.secrets ?? []).some((s) => s.destinations.includes('*'));
  const schema = (m.config_schema ?? {}) as { required?: string[]; properties?: Record<string, { default?: unknown; format?: string }> };
  const required = (schema.required ?? []).filter((k) => schema.properties?.[k]?.default === undefined);
  const secrets = req.secrets ?? [];
  if (!named && required.length === 0 && secrets.length === 0) return [`next: tyrum plugin grant ${id} --all-requested${risks} && tyrum plugin enable ${id}`];
  const hosts = (list: readonly string[]) => list.map((h) => (h === '*' ? 'HOST' : h)).join(',');
  const steps: string[] = [];
  for (const s of secrets) steps.push(`printf '%s' "$${s.name}" | tyrum secret set ${s.name} --destinations ${hosts(s.destinations)}   # the value on stdin, never in argv`);
  if (named) {
    const flags: string[] = [];
    for (const e of req.egress ?? []) flags.push(`--egress ${e.scheme ?? 'https'}://${e.host === '*' ? 'HOST' : e.host}${e.port ? `:${e.port}` : ''}=${(e.methods ?? ['GET']).join(',')}`);
    for (const s of secrets) flags.push(`--secret ${s.name}=${hosts(s.destinations)}`);
    if (req.kv) flags.push(`--kv ${req.kv.quota_bytes}`);
    if (req.memory) flags.push(`--memory ${req.memory.max_pages}`);
    if (req.time) flags.push(`--timeout ${req.time.timeout_ms}`);
    steps.push(`tyrum plugin grant ${id} ${flags.join(' ')}${risks}`);
  } else steps.push(`tyrum plugin grant ${id} --all-requested${risks}`);
  if (required.length > 0) steps.push(`tyrum plugin config ${id} ${required.map((k) => `--set ${k}=${schema.properties?.[k]?.format === 'uri' ? 'https://HOST/...' : 'VALUE'}`).join(' ')}`);
  steps.push(`tyrum plugin enable ${id}`);
  const lines = ['next:', ...steps.map((x) => `  ${x}`)];
  if (named) lines.push(`  (HOST: the host it should reach, e.g. api.example.com; it asks for hosts the operator names, so --all-requested would grant it no network)`);
  return lines;
}

function describe(p: PluginInfo): string {
  const e = p.effective;
  const lines = [
    `${p.id} ${p.version} — ${p.name} (publisher ${p.publisher})`,
    `  state:     ${p.state}${p.blockers.length > 0 ? `; cannot be enabled: ${p.blockers.join('; ')}` : ''}`,
    `  digests:   wasm ${p.wasm_sha256}  manifest ${p.manifest_sha256}`,
    `  tools:     ${p.tools.join(', ') || '-'}`,
    `  risks:     ${p.risk.join(', ') || '-'}${e.accepted_risks.length > 0 ? ` (accepted: ${e.accepted_risks.join(', ')})` : ''}`,
    `  effective: egress ${e.egress.map((r) => `${r.scheme}://${r.host}:${r.port} ${r.methods.join(',')}`).join('; ') || 'none'}; secrets ${e.secrets.map((s) => `${s.name}->${s.destinations.join(',')}`).join('; ') || 'none'}; kv ${e.kv ? `${e.kv.quota_bytes} B` : 'none'}; memory ${e.memory.max_pages} pages; timeout ${e.time.timeout_ms} ms`,
  ];
  if (p.pending_upgrade) {
    const u = p.pending_upgrade;
    lines.push(`  upgrade:   ${u.from_version} → ${u.to_version} asks for more than was granted (review, then tyrum plugin grant ${p.id} ...):`);
    for (const d of u.diff) lines.push(`    ${d.kind} ${d.change}: ${d.detail}`);
  }
  return lines.join('\n');
}

export async function plugin(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'install': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, 'allow-downgrade': { type: 'boolean' }, json: { type: 'boolean' } }, 1);
      if (values.help) return usage(io);
      const path = need(positionals[0], 'PATH', 'tyrum plugin install PATH [--allow-downgrade]');
      return withHome(values.home, async (svc) => {
        const r = await svc.plugins.install(path, actor(), { allowDowngrade: values['allow-downgrade'] ?? false });
        if (values.json) io.out(JSON.stringify(r));
        else {
          io.out(`${r.action} ${r.plugin.id} ${r.plugin.version}${r.plugin.state === 'disabled' ? ' (disabled: quarantined until granted and enabled)' : ''}`);
          for (const d of r.diff) io.out(`  asks for more: ${d.kind} ${d.change}: ${d.detail}`);
          io.out(describe(r.plugin));
          if (r.plugin.state === 'disabled') for (const line of installHints(svc.plugins.get(r.plugin.id).manifest)) io.out(line);
        }
        return 0;
      });
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io);
      return withHome(values.home, async (svc) => {
        const list = svc.plugins.list();
        if (values.json) io.out(JSON.stringify({ plugins: list }));
        else {
          io.out(['ID', 'VERSION', 'STATE', 'RISKS', 'TOOLS', 'BLOCKERS'].join('\t'));
          for (const p of list) io.out([p.id, p.version, p.state, p.risk.join(',') || '-', String(p.tools.length), p.blockers.length > 0 ? p.blockers.join('; ') : '-'].join('\t'));
        }
        return 0;
      });
    }
    case 'lock': {
      const { values } = parse(rest, { home: { type: 'string' } });
      if (values.help) return usage(io);
      return withHome(values.home, async (svc) => {
        io.out(JSON.stringify(svc.plugins.lock(), null, 2));
        return 0;
      });
    }
    case 'info': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } }, 1);
      if (values.help) return usage(io);
      const id = need(positionals[0], 'ID', 'tyrum plugin info ID [--json]');
      return withHome(values.home, async (svc) => {
        const r = svc.plugins.get(id);
        io.out(values.json ? JSON.stringify(r) : `${describe(r.plugin)}\n  requests:  ${JSON.stringify(r.manifest.requests ?? {})}\n  grant:     ${JSON.stringify(r.plugin.grant)}`);
        return 0;
      });
    }
    case 'grant': {
      const { values, positionals } = parse(
        rest,
        {
          home: { type: 'string' },
          json: { type: 'boolean' },
          'all-requested': { type: 'boolean' },
          'grant-file': { type: 'string' },
          egress: { type: 'string', multiple: true },
          secret: { type: 'string', multiple: true },
          kv: { type: 'string' },
          memory: { type: 'string' },
          timeout: { type: 'string' },
          'accept-risk': { type: 'string' },
        },
        1,
      );
      if (values.help) return usage(io);
      const id = need(positionals[0], 'ID', 'tyrum plugin grant ID [--all-requested] [--egress URL[=METHODS]]... [--secret NAME[=DEST,...]]... [--accept-risk FLAG,...]');
      let grant: PluginGrant | undefined;
      const flags = values.egress !== undefined || values.secret !== undefined || values.kv !== undefined || values.memory !== undefined || values.timeout !== undefined;
      if (values['grant-file'] !== undefined) {
        if (flags || values['all-requested']) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--grant-file cannot be combined with other grant flags');
        try {
          grant = JSON.parse(readFileSync(values['grant-file'], 'utf8')) as PluginGrant;
        } catch (e) {
          throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--grant-file: ${(e as Error).message}`);
        }
      } else if (flags) {
        if (values['all-requested']) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--all-requested cannot be combined with explicit grant flags');
        grant = {};
        if (values.egress) grant.egress = values.egress.map(parseEgressFlag);
        if (values.secret) {
          grant.secrets = values.secret.map((s) => {
            const [name, dests] = s.split('=', 2) as [string, string | undefined];
            // Hosts and origins are lower case (a scheme typed HTTP:// is the same scheme).
            return dests ? { name, destinations: listArg(dests)!.map((d) => d.toLowerCase()) } : { name };
          });
        }
        const kv = intArg(values.kv, 'kv');
        if (kv !== undefined) grant.kv = { quota_bytes: kv };
        const mem = intArg(values.memory, 'memory');
        if (mem !== undefined) grant.memory = { max_pages: mem };
        const timeout = intArg(values.timeout, 'timeout');
        if (timeout !== undefined) grant.time = { timeout_ms: timeout };
      } else if (!values['all-requested'] && values['accept-risk'] === undefined) {
        throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'say what to grant: --all-requested, --grant-file F, or explicit flags (see tyrum plugin --help)');
      }
      return withHome(values.home, async (svc) => {
        const accept = riskList(values['accept-risk']);
        const p = await svc.plugins.grant(id, { ...(grant ? { grant } : {}), allRequested: values['all-requested'] ?? false, acceptRisks: accept }, actor());
        io.out(values.json ? JSON.stringify({ plugin: p }) : `granted ${p.id}\n${describe(p)}${p.state === 'disabled' && p.blockers.length === 0 ? `\nnext: tyrum plugin enable ${p.id}` : ''}`);
        return 0;
      });
    }
    case 'revoke':
    case 'enable':
    case 'disable':
    case 'remove': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } }, 1);
      if (values.help) return usage(io);
      const id = need(positionals[0], 'ID', `tyrum plugin ${sub} ID`);
      return withHome(values.home, async (svc) => {
        if (sub === 'remove') {
          await svc.plugins.remove(id, actor());
          io.out(values.json ? JSON.stringify({ removed: id }) : `removed ${id}`);
          return 0;
        }
        const p = sub === 'revoke' ? await svc.plugins.revoke(id, actor()) : sub === 'enable' ? await svc.plugins.enable(id, actor()) : await svc.plugins.disable(id, actor());
        io.out(values.json ? JSON.stringify({ plugin: p }) : `${sub === 'revoke' ? 'revoked' : sub + 'd'} ${p.id} (now ${p.state})`);
        return 0;
      });
    }
    case 'config': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, set: { type: 'string', multiple: true }, 'set-json': { type: 'string', multiple: true }, file: { type: 'string' }, show: { type: 'boolean' } }, 1);
      if (values.help) return usage(io);
      const id = need(positionals[0], 'ID', 'tyrum plugin config ID [--set KEY=VALUE]... [--set-json KEY=JSON]... [--file F] [--show]');
      return withHome(values.home, async (svc) => {
        const current = JSON.parse(svc.store.plugins.getConfig(id) ?? '{}') as Record<string, unknown>;
        svc.plugins.get(id); // not_found for an unknown plugin, before anything else
        if (values.show || (values.set === undefined && values['set-json'] === undefined && values.file === undefined)) {
          io.out(JSON.stringify(current, null, values.json ? 0 : 2));
          return 0;
        }
        let next: Record<string, unknown> = { ...current };
        if (values.file !== undefined) {
          try {
            next = JSON.parse(readFileSync(values.file, 'utf8')) as Record<string, unknown>;
          } catch (e) {
            throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--file: ${(e as Error).message}`);
          }
        }
        for (const kv of values.set ?? []) {
          const i = kv.indexOf('=');
          if (i <= 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--set "${kv}": expected KEY=VALUE`);
          next[kv.slice(0, i)] = kv.slice(i + 1);
        }
        for (const kv of values['set-json'] ?? []) {
          const i = kv.indexOf('=');
          if (i <= 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--set-json "${kv}": expected KEY=JSON`);
          try {
            next[kv.slice(0, i)] = JSON.parse(kv.slice(i + 1));
          } catch {
            throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--set-json "${kv}": the value is not JSON`);
          }
        }
        const saved = await svc.plugins.configure(id, next, actor());
        io.out(JSON.stringify(saved, null, values.json ? 0 : 2));
        return 0;
      });
    }
    // The author's commands live with the SDK (sdk/author); they, and their toolchains (typegen,
    // compilers, the sandbox), load only when one is typed, so operator commands start fast.
    case 'new':
    case 'build':
    case 'types':
    case 'test':
    case 'pack':
    case 'keygen':
    case 'sign':
      return (await import('../../sdk/author/cli/index.js')).authorCommand(sub, rest, io);
    case '--help':
      return usage(io);
    default:
      throw subcommandError('plugin', sub);
  }
}

function usage(io: Io): number {
  io.out(USAGE);
  return 0;
}
