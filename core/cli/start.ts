/** `tyrum start`: the gateway in the foreground, until SIGINT or SIGTERM. */
import { resolveHome, DEFAULT_PORT } from '../config/home.js';
import { startGateway } from '../runtime.js';
import { packageInfo } from '../util/package-info.js';
import { parse, portArg } from './args.js';
import type { Io } from './io.js';

export async function start(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, 'log-level': { type: 'string' }, 'accept-tampered-audit': { type: 'boolean' } });
  if (values.help) return usage(io, 'tyrum start [--home DIR] [--host H] [--port N] [--log-level trace|debug|info|warn|error|silent] [--accept-tampered-audit]');
  const home = resolveHome(values.home);
  const overrides = { ...(values.host !== undefined ? { host: values.host } : {}), ...(values.port !== undefined ? { port: portArg(values.port)! } : {}) };
  const gw = await startGateway({ home, overrides, logLevel: values['log-level'] ?? 'info', acceptTamperedAudit: values['accept-tampered-audit'] === true });
  // The banner (token included) goes to stderr in one write, so a reader never sees half of it;
  // stdout carries the JSON log lines.
  const banner = [`Tyrum gateway ${packageInfo().version} listening on ${gw.url}`];
  const tampered = gw.audit.tampered();
  if (tampered.length > 0) {
    banner.push(`WARNING: the audit log was tampered with (accepted ${tampered.length === 1 ? 'once' : `${tampered.length} times`}; last: ${tampered[tampered.length - 1]!.reason}). \`tyrum audit verify\` reports it.`);
  }
  banner.push(`home: ${home}`);
  const httpBase = gw.url.replace(/^ws/, 'http').replace(/\/ws$/, '');
  if (gw.bootstrapToken) banner.push(`Operator web UI (sign-in link; the token is in the fragment, never sent to the server):\n  ${httpBase}/#token=${gw.bootstrapToken}`);
  else banner.push(`Operator web UI: ${httpBase}/ (a sign-in link: tyrum ui --home ${home})`);
  if (gw.bootstrapToken) {
    banner.push(`First start: created an admin token. It is shown only this once; store it now:\n  ${gw.bootstrapToken}`);
    banner.push(`Try it from another terminal:\n  export TYRUM_TOKEN=${gw.bootstrapToken}\n  tyrum ping --home ${home}${gw.port !== DEFAULT_PORT ? ` --url ${gw.url}` : ''}`);
  } else {
    banner.push(`Connect with a token from \`tyrum token create --scopes ... --home ${home}\` (TYRUM_TOKEN) to ${gw.url}`);
  }
  io.err(banner.join('\n'));
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  io.err('shutting down');
  await gw.close();
  return 0;
}

function usage(io: Io, text: string): number {
  io.out(`usage: ${text}`);
  return 0;
}
