/**
 * `tyrum secret set|list|rm`. A value is read from standard input, never from argv (argv is
 * visible to every user through ps and lands in shell history). On a terminal the input is not
 * echoed.
 */
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/home.js';
import { openHomeCore } from '../home.js';
import { isoTimes } from '../util/iso-times.js';
import { parse, listArg, need, subcommandError } from './args.js';
import type { Io } from './io.js';
import { cliActor as who } from './home.js';
import { DEFAULT_TENANT } from '../../schemas/index.js';

/** `--tenant ID`: a tenant that exists (as `tyrum token create --tenant`); absent: the default tenant. */
function tenantArg(svc: { store: { tenants: { get(id: string): unknown } } }, tenant: string | undefined): string {
  if (tenant === undefined || tenant === DEFAULT_TENANT) return DEFAULT_TENANT;
  if (svc.store.tenants.get(tenant) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no tenant "${tenant}" (tyrum tenant create ${tenant})`, { tenant });
  return tenant;
}

/** The audit data member naming a tenant other than the default (as `token.created` does). */
function tenantData(tenant: string): { tenant?: string } {
  return tenant === DEFAULT_TENANT ? {} : { tenant };
}

const USAGE = `usage:
  tyrum secret set NAME --destinations DEST[,DEST...]   value from stdin (hidden on a terminal); setting again rotates
  tyrum secret set NAME --local-only                    a secret the gateway only uses itself, never sends (a webhook
                                                        signing secret, e.g. for tyrum channel add --verify-secret)
  tyrum secret list [--json]                            handles and destinations, never values
  tyrum secret rm NAME

Each takes --tenant ID: the handles of that tenant (tyrum tenant create ID), which only its
plugin calls use; without it, the host's (the default tenant's).

A destination is a bare host (api.github.com: https on port 443 only) or an origin
(http://127.0.0.1:8080, https://api.example.com:8443); plain http only when named so.`;

/** Reads all of stdin (one trailing newline dropped); on a TTY, reads one hidden line. */
export async function readSecretInput(stdin: NodeJS.ReadStream = process.stdin, prompt?: (s: string) => void): Promise<Buffer> {
  if (stdin.isTTY) {
    prompt?.('value (input hidden, Enter to finish): ');
    stdin.setRawMode(true);
    const chunks: number[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const onData = (d: Buffer) => {
          for (const b of d) {
            if (b === 13 || b === 10) return done();
            if (b === 3) return fail(new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'cancelled'));
            if (b === 127 || b === 8) chunks.pop();
            else chunks.push(b);
          }
        };
        const done = () => {
          stdin.off('data', onData);
          resolve();
        };
        const fail = (e: Error) => {
          stdin.off('data', onData);
          reject(e);
        };
        stdin.on('data', onData);
        stdin.resume();
      });
    } finally {
      stdin.setRawMode(false);
      stdin.pause();
    }
    return Buffer.from(chunks);
  }
  const parts: Buffer[] = [];
  for await (const c of stdin) parts.push(c as Buffer);
  let buf = Buffer.concat(parts);
  if (buf.length > 0 && buf[buf.length - 1] === 10) buf = buf.subarray(0, buf.length - (buf.length > 1 && buf[buf.length - 2] === 13 ? 2 : 1));
  return buf;
}

export async function secret(argv: string[], io: Io, input: () => Promise<Buffer> = () => readSecretInput(process.stdin, (s) => process.stderr.write(s))): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'set': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, destinations: { type: 'string' }, 'local-only': { type: 'boolean' }, tenant: { type: 'string' }, json: { type: 'boolean' } }, 1);
      if (values.help) return (io.out(USAGE), 0);
      const name = need(positionals[0], 'NAME', 'tyrum secret set NAME --destinations DEST[,DEST...] [--tenant ID] (value on stdin)');
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const tenant = tenantArg(svc, values.tenant);
        const existing = svc.secrets.get(name, tenant);
        const localOnly = values['local-only'] === true;
        if (localOnly && values.destinations !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--local-only and --destinations exclude each other');
        const destinations = localOnly ? [] : (listArg(values.destinations) ?? existing?.destinations);
        const wasLocal = existing !== undefined && existing.destinations.length === 0;
        if (!localOnly && !wasLocal && (!destinations || destinations.length === 0)) {
          throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--destinations is required for a new secret: the hosts (https, port 443) or origins (http://host:port) its value may be sent to (or --local-only for a secret the gateway only uses itself, e.g. a webhook signing secret)');
        }
        const value = await input();
        if (value.length === 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'no value on standard input (pipe it in: printf %s "$VALUE" | tyrum secret set NAME ...)');
        const h = svc.secrets.set(name, value, localOnly ? [] : values.destinations !== undefined ? destinations : undefined, { localOnly, tenant });
        value.fill(0);
        svc.audit.appendSync(existing ? 'secret.rotated' : 'secret.created', who(), { name: h.name, version: h.version, destinations: h.destinations, ...tenantData(tenant) });
        io.out(values.json ? JSON.stringify(h) : `${existing ? 'rotated' : 'stored'} ${h.name} (version ${h.version}) ${h.destinations.length === 0 ? 'local-only (never sent anywhere)' : `for ${h.destinations.join(', ')}`}`);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, tenant: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return (io.out(USAGE), 0);
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const list = svc.secrets.list(tenantArg(svc, values.tenant));
        // Times in ISO-8601, as everywhere else in the CLI's JSON.
        if (values.json) io.out(JSON.stringify({ secrets: isoTimes(list) }));
        else {
          io.out(['NAME', 'VERSION', 'DESTINATIONS', 'ROTATED'].join('\t'));
          for (const h of list) io.out([h.name, String(h.version), h.destinations.join(','), new Date(h.rotated_at).toISOString()].join('\t'));
        }
        return 0;
      } finally {
        await svc.close();
      }
    }
    case 'rm': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, tenant: { type: 'string' } }, 1);
      if (values.help) return (io.out(USAGE), 0);
      const name = need(positionals[0], 'NAME', 'tyrum secret rm NAME [--tenant ID]');
      const svc = openHomeCore(resolveHome(values.home));
      try {
        const tenant = tenantArg(svc, values.tenant);
        if (!svc.secrets.remove(name, tenant)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no secret ${name}${tenant === DEFAULT_TENANT ? '' : ` of tenant "${tenant}"`}`);
        svc.audit.appendSync('secret.removed', who(), { name, ...tenantData(tenant) });
        io.out(`removed ${name}`);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case '--help':
      return (io.out(USAGE), 0);
    default:
      throw subcommandError('secret', sub);
  }
}
