/**
 * `tyrum tenant create|list`: tenants are made by the host operator on the gateway home, never
 * over the protocol (no token acts across tenants: docs/tenancy.md). A tenant's first token is
 * `tyrum token create --tenant ID`; tokens it mints stay in it.
 */
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/home.js';
import { openHomeCore } from '../home.js';
import { TENANT_ID_RE } from '../auth/tokens.js';
import { parse, need, subcommandError } from './args.js';
import { cliActor } from './home.js';
import type { Io } from './io.js';

export async function tenant(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, label: { type: 'string' }, json: { type: 'boolean' } }, 1);
      if (values.help) return usage(io, 'tyrum tenant create ID [--label L] [--json]');
      const id = need(positionals[0], 'ID', 'tyrum tenant create ID');
      if (!TENANT_ID_RE.test(id)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `invalid tenant id "${id}": a lower-case letter, then up to 62 lower-case letters, digits or '-'`, { tenant: id });
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const record = { id, label: values.label ?? '', created_at: Date.now() };
        const inserted = svc.store.tx(() => svc.store.tenants.insert(record));
        if (!inserted) throw new TyrumError('TYRUM_ERR_CONFLICT', `tenant "${id}" exists already`, { tenant: id });
        svc.audit.appendSync('tenant.created', cliActor(), { tenant: id, label: record.label });
        io.out(values.json ? JSON.stringify({ tenant: view(record) }) : `created tenant ${id}; its first token: tyrum token create --tenant ${id} --scopes ...`);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum tenant list [--json]');
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const tenants = svc.store.tenants.list().map(view);
        if (values.json) io.out(JSON.stringify({ tenants }));
        else {
          io.out(['ID', 'LABEL', 'CREATED'].join('\t'));
          for (const t of tenants) io.out([t.tenant, t.label || '-', t.created_at].join('\t'));
        }
        return 0;
      } finally {
        await svc.close();
      }
    }
    case '--help':
      return usage(io, 'tyrum tenant create|list ... (tyrum tenant SUBCOMMAND --help for each)');
    default:
      throw subcommandError('tenant', sub);
  }
}

function view(t: { id: string; label: string; created_at: number }): { tenant: string; label: string; created_at: string } {
  return { tenant: t.id, label: t.label, created_at: new Date(t.created_at).toISOString() };
}

function usage(io: Io, text: string): number {
  io.out(`usage: ${text}`);
  return 0;
}
