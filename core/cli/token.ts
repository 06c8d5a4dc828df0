/**
 * `tyrum token create|list|revoke`: on the gateway home directly, so they work whether or not the
 * gateway is running (a running gateway notices revocations within a second).
 */
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/home.js';
import { openHomeCore } from '../home.js';
import { parseTtl, tenantOf, tokenInfo } from '../auth/tokens.js';
import type { TokenRecord } from '../store/index.js';
import { parse, listArg, need, subcommandError } from './args.js';
import { cliActor } from './home.js';
import type { Io } from './io.js';

export async function token(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const { values } = parse(rest, { home: { type: 'string' }, scopes: { type: 'string' }, roles: { type: 'string' }, ttl: { type: 'string' }, label: { type: 'string' }, tenant: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum token create --scopes a,b [--roles client,node] [--ttl 30d] [--label L] [--tenant T] [--json]');
      const scopes = listArg(values.scopes);
      if (!scopes || scopes.length === 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--scopes is required, e.g. --scopes operator.read,operator.write');
      const ttlSeconds = values.ttl === undefined ? undefined : parseTtl(values.ttl);
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const roles = listArg(values.roles);
        const created = await svc.tokens.create({ scopes, ...(roles ? { roles } : {}), ...(values.label !== undefined ? { label: values.label } : {}), ...(ttlSeconds !== undefined ? { ttlSeconds } : {}), ...(values.tenant !== undefined ? { tenant: values.tenant } : {}), createdBy: 'cli' });
        const tenant = tenantOf(created.record);
        svc.audit.appendSync('token.created', cliActor(), { token_id: created.record.id, scopes: created.record.scopes, roles: created.record.roles, label: created.record.label, expires_at: created.record.expires_at, ...(tenant !== 'default' ? { tenant } : {}) });
        io.out(values.json ? JSON.stringify({ token: created.token, info: infoOf(created.record, tenant !== 'default') }) : created.token);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, tenant: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum token list [--tenant T] [--json]');
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const records = svc.tokens.list(values.tenant);
        // The tenant is shown once a tenant other than the default has tokens: a single-tenant
        // home lists exactly what it did before tenancy.
        const tenants = new Map(records.map((r) => [r.id, svc.store.tokens.tenantOf(r.id)]));
        const withTenant = [...tenants.values()].some((x) => x !== 'default');
        const infos = records.map((r) => infoOf({ ...r, tenant_id: tenants.get(r.id)! }, withTenant));
        if (values.json) io.out(JSON.stringify({ tokens: infos }));
        else {
          io.out(['ID', 'LABEL', 'SCOPES', 'ROLES', 'CREATED', 'EXPIRES', 'STATUS', ...(withTenant ? ['TENANT'] : [])].join('\t'));
          const now = Date.now();
          for (const t of infos) {
            const status = t.revoked_at ? 'revoked' : t.expires_at && Date.parse(t.expires_at) <= now ? 'expired' : 'active';
            io.out([t.token_id, t.label || '-', t.scopes.join(','), t.roles.join(','), t.created_at, t.expires_at ?? 'never', status, ...(withTenant ? [t.tenant ?? 'default'] : [])].join('\t'));
          }
        }
        return 0;
      } finally {
        await svc.close();
      }
    }
    case 'revoke': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } }, 1);
      if (values.help) return usage(io, 'tyrum token revoke ID');
      const id = need(positionals[0], 'ID', 'tyrum token revoke ID');
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const { record: rec, descendants } = svc.tokens.revoke(id);
        svc.audit.appendSync('token.revoked', cliActor(), { token_id: id, descendants });
        for (const d of descendants) svc.audit.appendSync('token.revoked', cliActor(), { token_id: d, revoked_with: id });
        // A node token takes its pairing with it (as over the protocol).
        svc.pairings.revokeByTokens([id, ...descendants], cliActor());
        const revokedAt = new Date(rec.revoked_at ?? Date.now()).toISOString();
        io.out(values.json ? JSON.stringify({ token_id: id, revoked_at: revokedAt, descendants }) : `revoked ${id}${descendants.length > 0 ? ` and the ${descendants.length} token(s) it minted: ${descendants.join(', ')}` : ''}`);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case '--help':
      return usage(io, 'tyrum token create|list|revoke ... (tyrum token SUBCOMMAND --help for each)');
    default:
      throw subcommandError('token', sub);
  }
}

/** A token's public view, with its tenant when `withTenant`. */
function infoOf(r: TokenRecord, withTenant: boolean): ReturnType<typeof tokenInfo> & { tenant?: string } {
  return { ...tokenInfo(r), ...(withTenant ? { tenant: tenantOf(r) } : {}) };
}

function usage(io: Io, text: string): number {
  io.out(`usage: ${text}`);
  return 0;
}
