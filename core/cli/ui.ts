/**
 * `tyrum ui`: prints a sign-in link for the operator web UI, `http://HOST:PORT/#token=...`. The
 * token is a fresh operator token (minted here, on the home, like `tyrum token create`) and sits
 * in the URL fragment, which browsers never send to a server, so it reaches no log; the page
 * stores it and removes it from the address bar. `--bootstrap` also prints the
 * `tyrum://bootstrap?...` payload of a mobile host: the gateway's HTTP base, its WebSocket URL and
 * a short-lived single-use node bootstrap token (like the node.bootstrap operation's).
 */
import { parseTtl } from '../auth/tokens.js';
import { TyrumError } from '../errors/index.js';
import { SCOPES } from '../../schemas/index.js';
import { parse } from './args.js';
import { cliActor as who, withHomeCore } from './home.js';
import type { Io } from './io.js';

const USAGE = `usage: tyrum ui [--scopes a,b] [--ttl 30d] [--label L] [--bootstrap [--bootstrap-ttl 5m]] [--host H] [--json]
  a sign-in link for the operator web UI (a new operator token in the URL fragment; default: every
  operator scope, 30 days). --bootstrap also prints tyrum://bootstrap?http=...&ws=...&token=... with a
  single-use node bootstrap token (5 minutes) for a mobile host.`;

export async function uiCmd(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    home: { type: 'string' },
    json: { type: 'boolean' },
    scopes: { type: 'string' },
    ttl: { type: 'string' },
    label: { type: 'string' },
    bootstrap: { type: 'boolean' },
    'bootstrap-ttl': { type: 'string' },
    host: { type: 'string' },
  });
  if (values.help) return (io.out(USAGE), 0);
  return withHomeCore(values.home, async (svc) => {
    const scopes = values.scopes !== undefined ? values.scopes.split(',').map((s) => s.trim()).filter((s) => s !== '') : [...SCOPES];
    const ttlSeconds = parseTtl(values.ttl ?? '30d');
    const { token, record } = await svc.tokens.create({ scopes, roles: ['client'], ttlSeconds, label: values.label ?? 'web UI', createdBy: 'cli' });
    svc.audit.appendSync('token.created', who(), { token_id: record.id, kind: record.kind, roles: record.roles, scopes: record.scopes, label: record.label, expires_at: record.expires_at });
    const cfg = svc.config;
    const rawHost = values.host ?? (cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host);
    const host = rawHost.includes(':') && !rawHost.startsWith('[') ? `[${rawHost}]` : rawHost;
    const httpBase = `${cfg.tls ? 'https' : 'http'}://${host}:${cfg.port}`;
    const wsUrl = `${cfg.tls ? 'wss' : 'ws'}://${host}:${cfg.port}/ws`;
    const link = `${httpBase}/#token=${encodeURIComponent(token)}`;
    let bootstrap: { url: string; token_id: string; expires_at: string } | null = null;
    if (values.bootstrap) {
      const bttl = parseTtl(values['bootstrap-ttl'] ?? '5m');
      if (bttl > 900) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--bootstrap-ttl is at most 15m');
      const b = await svc.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], singleUse: true, ttlSeconds: bttl, label: 'node bootstrap', createdBy: 'cli' });
      svc.audit.appendSync('token.created', who(), { token_id: b.record.id, kind: b.record.kind, single_use: true, roles: b.record.roles, scopes: b.record.scopes, label: b.record.label, expires_at: b.record.expires_at });
      const q = new URLSearchParams({ http: httpBase, ws: wsUrl, token: b.token });
      bootstrap = { url: `tyrum://bootstrap?${q.toString()}`, token_id: b.record.id, expires_at: new Date(b.record.expires_at!).toISOString() };
    }
    if (values.json) {
      io.out(JSON.stringify({ url: link, token_id: record.id, expires_at: new Date(record.expires_at!).toISOString(), ...(bootstrap ? { bootstrap } : {}) }));
      return 0;
    }
    io.out(link);
    if (bootstrap) io.out(bootstrap.url);
    io.err(`Open the link in a browser on this machine (token ${record.id}, expires ${new Date(record.expires_at!).toISOString()}; revoke with: tyrum token revoke ${record.id}).`);
    if (bootstrap) io.err(`The tyrum:// payload carries a single-use node bootstrap token ${bootstrap.token_id} (expires ${bootstrap.expires_at}).`);
    if (cfg.tls === null && !['127.0.0.1', 'localhost', '[::1]'].includes(host)) io.err('Note: browsers allow the UI\'s WebCrypto keys only in a secure context: use https, or http://127.0.0.1 / http://localhost.');
    return 0;
  });
}
