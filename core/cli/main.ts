/**
 * The `tyrum` command line. Conventional and scriptable: results on stdout (`--json` where a
 * script wants it), diagnostics on stderr, exit 0 on success, 1 on failure, 2 on usage errors.
 * Token and audit commands work on the gateway home directly, so they work whether or not the
 * gateway is running (a running gateway notices revocations within a second).
 */
import { TyrumError, isTyrumError } from '../errors/index.js';
import { resolveHome, DEFAULT_PORT } from '../config/index.js';
import { openHome, startGateway } from '../runtime.js';
import { parseTtl, tokenInfo } from '../auth/tokens.js';
import { verifyAudit, listAudit } from '../audit/index.js';
import { packageInfo } from '../util/package-info.js';
import { parse, portArg, listArg, need, closest, COMMANDS, subcommandError } from './args.js';
import { doctor } from './doctor.js';
import { ping } from './ping.js';
import { plugin } from './plugin.js';
import { tool } from './tool.js';
import { secret } from './secret.js';
import { policyCmd, approvalsCmd } from './governance.js';
import { runCmd } from './run.js';
import { mcp } from './mcp.js';
import { cliActor } from './home.js';
import type { Io } from './io.js';

export type { Io } from './io.js';

const processIo: Io = {
  out: (t) => process.stdout.write(t + '\n'),
  err: (t) => process.stderr.write(t + '\n'),
};

const USAGE = `tyrum ${packageInfo().version} — a gateway that lets AI agents act safely

Usage: tyrum <command> [options]

Gateway
  start [--home DIR] [--host H] [--port N] [--log-level L]   run the gateway in the foreground
        [--accept-tampered-audit]                            start on an audit log that no longer matches its signed
                                                             checkpoint; recorded for good, reported by doctor/audit verify
  doctor [--home DIR] [--json]                               check home, database, key, port, audit chain
  ping [--url URL] [--token T] [--home DIR] [--json]         connect, handshake and ping a running gateway

Tokens
  token create --scopes a,b [--roles client,node] [--ttl 30d] [--label L] [--json]
                                                             mint a token; prints it alone on stdout
  token list [--json]                                        list tokens (never their secrets)
  token revoke ID                                            revoke; open sockets close within 1 s

Plugins (work on the home; a running gateway picks changes up)
  plugin install PATH [--allow-downgrade]                    install from a directory or .tgz; starts disabled (quarantine)
  plugin list | lock | info ID | enable ID | disable ID | revoke ID | remove ID
  plugin grant ID [--all-requested] [--egress URL[=METHODS]] [--secret NAME[=DESTS]] [--kv B] [--memory P] [--timeout MS] [--accept-risk F,..]
  plugin config ID [--set K=V] [--set-json K=JSON] [--file F] [--show]

Tools (through a running gateway; token from --token or $TYRUM_TOKEN)
  tool list [--json]
  tool call TOOL_ID --args '<json>' [--json]

Secrets (values from stdin only; never printed)
  secret set NAME --destinations DEST[,DEST]                 store or rotate (DEST: host = https:443 only, or http(s)://host:port)
  secret list [--json] | secret rm NAME

Policy and approvals (work on the home; a running gateway picks changes up)
  policy show | policy set FILE | policy explain TOOL_ID [--args JSON] | policy override-revoke ID
  approvals list [--all] | approvals approve ID [--always] [--reason R] | approvals deny ID [--reason R]

Runs (through a running gateway)
  run list [--state S] | run get ID | run cancel ID | run resolve ID STEP retry|skip|fail

MCP servers (work on the home; a running gateway picks changes up)
  mcp add NAME [--env K=V]... -- COMMAND [ARG...]            declare a stdio server (quarantined; its tools listed for review)
  mcp add NAME --url URL [--header K=V]...                   declare a Streamable HTTP server
  mcp list | mcp tools NAME | mcp diff NAME [--refresh] | mcp approve NAME [--read-only T,..] | mcp remove NAME

Audit
  audit verify [--json]                                      verify the hash chain; exit 1 naming the first bad entry
  audit list [--after SEQ] [--limit N] [--type T] [--json]   print audit entries

Every command takes --home DIR (default $TYRUM_HOME or ~/.tyrum).
Scopes: operator.read, operator.write, operator.approvals, operator.pairing, operator.admin.`;

/**
 * The process entry (bin/tyrum.js): runs `main` on the process's arguments and sets the exit code.
 * A reader that goes away (`tyrum audit list | head`) ends the command quietly, as Unix tools do,
 * instead of an EPIPE stack trace.
 */
export async function runProcess(): Promise<void> {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
      throw e;
    });
  }
  process.exitCode = await main(process.argv.slice(2));
}

/** The command as typed so far, for messages: "tyrum plugin list". */
function commandName(argv: readonly string[]): string {
  const [cmd, sub] = argv;
  if (cmd === undefined || !Object.hasOwn(COMMANDS, cmd)) return 'tyrum';
  return sub !== undefined && COMMANDS[cmd]!.includes(sub) ? `tyrum ${cmd} ${sub}` : `tyrum ${cmd}`;
}

/**
 * Unknown commands, and for a command with subcommands a missing or unknown one, with the nearest
 * known one when it looks like a typo: one check for every command, before any of them runs.
 */
function checkCommand(argv: readonly string[]): void {
  const [cmd, sub] = argv;
  if (cmd === undefined || cmd.startsWith('-')) return;
  if (!Object.hasOwn(COMMANDS, cmd)) {
    const near = closest(cmd, Object.keys(COMMANDS));
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown command "${cmd}"${near ? `; did you mean "${near}"?` : ''} (see: tyrum help)`);
  }
  const subs = COMMANDS[cmd]!;
  if (subs.length === 0 || sub === '--help' || (sub !== undefined && subs.includes(sub))) return;
  throw subcommandError(cmd, sub);
}

/** `tyrum X help` and `tyrum X -h` are `tyrum X --help` for a command with subcommands. */
function helpWord(argv: string[]): string[] {
  const [cmd, sub, ...rest] = argv;
  return cmd !== undefined && Object.hasOwn(COMMANDS, cmd) && COMMANDS[cmd]!.length > 0 && (sub === 'help' || sub === '-h') ? [cmd, '--help', ...rest] : argv;
}

/** `--json` among the options (not after `--`, where the words belong to a server's command). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** Runs the CLI; resolves with the exit code. */
export async function main(args: string[], io: Io = processIo): Promise<number> {
  const argv = helpWord(args);
  const [cmd, ...rest] = argv;
  try {
    checkCommand(argv);
    switch (cmd) {
      case undefined:
      case '--help':
      case '-h':
        io.out(USAGE);
        return cmd === undefined ? 2 : 0;
      case 'help':
        // `tyrum help plugin [grant]` is `tyrum plugin [grant] --help`, as git and docker do.
        if (rest.length === 0) {
          io.out(USAGE);
          return 0;
        }
        return await main([...rest.filter((w) => !w.startsWith('-')).slice(0, 2), '--help'], io);
      case '--version':
      case 'version':
        io.out(packageInfo().version);
        return 0;
      case 'start':
        return await start(rest, io);
      case 'token':
        return await token(rest, io);
      case 'audit':
        return await audit(rest, io);
      case 'doctor':
        return await doctor(rest, io);
      case 'ping':
        return await ping(rest, io);
      case 'plugin':
        return await plugin(rest, io);
      case 'tool':
        return await tool(rest, io);
      case 'secret':
        return await secret(rest, io);
      case 'policy':
        return await policyCmd(rest, io);
      case 'approvals':
        return await approvalsCmd(rest, io);
      case 'run':
        return await runCmd(rest, io);
      case 'mcp':
        return await mcp(rest, io);
      default:
        throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown command "${cmd}" (see: tyrum help)`);
    }
  } catch (e) {
    return report(e, argv, io);
  }
}

/**
 * A failure as the user sees it: `tyrum: MESSAGE [CODE]` with any usage text on the lines after it;
 * under --json, one JSON object on stderr, {"error":{"code","message","details"?}}. The exit code
 * is the same either way: 2 for a usage error, 1 otherwise.
 */
function report(e: unknown, argv: readonly string[], io: Io): number {
  const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', `unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  let message = err.message;
  const where = commandName(argv);
  if (err.details?.unknown_option === true) message = `${message.replace(/^unknown option '([^']+)'/, `unknown option '$1' for '${where}'`)} (see: ${where} --help)`;
  const code = err.code === 'TYRUM_ERR_INVALID_ARGUMENT' ? 2 : 1;
  if (wantsJson(argv)) {
    const { unknown_option: _, ...details } = err.details ?? {};
    io.err(JSON.stringify({ error: { code: err.code, message, ...(Object.keys(details).length > 0 ? { details } : {}) } }));
    return code;
  }
  const [first, ...more] = message.split('\n');
  io.err(`tyrum: ${first} [${err.code}]`);
  if (more.length > 0) io.err(more.join('\n'));
  return code;
}

async function start(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, 'log-level': { type: 'string' }, 'accept-tampered-audit': { type: 'boolean' } });
  if (values.help) return usage(io, 'tyrum start [--home DIR] [--host H] [--port N] [--log-level trace|debug|info|warn|error|silent] [--accept-tampered-audit]');
  const home = resolveHome(values.home);
  const overrides = { ...(values.host !== undefined ? { host: values.host } : {}), ...(values.port !== undefined ? { port: portArg(values.port)! } : {}) };
  const gw = await startGateway({ home, overrides, logLevel: values['log-level'] ?? 'info', acceptTamperedAudit: values['accept-tampered-audit'] === true });
  io.err(`Tyrum gateway ${packageInfo().version} listening on ${gw.url}`);
  const tampered = gw.audit.tampered();
  if (tampered.length > 0) {
    io.err(`WARNING: the audit log was tampered with (accepted ${tampered.length === 1 ? 'once' : `${tampered.length} times`}; last: ${tampered[tampered.length - 1]!.reason}). \`tyrum audit verify\` reports it.`);
  }
  io.err(`home: ${home}`);
  if (gw.bootstrapToken) {
    // The banner (token included) goes to stderr; stdout carries the JSON log lines.
    io.err(`First start: created an admin token. It is shown only this once; store it now:\n  ${gw.bootstrapToken}`);
    io.err(`Try it from another terminal:\n  export TYRUM_TOKEN=${gw.bootstrapToken}\n  tyrum ping --home ${home}${gw.port !== DEFAULT_PORT ? ` --url ${gw.url}` : ''}`);
  } else {
    io.err(`Connect with a token from \`tyrum token create --scopes ... --home ${home}\` (TYRUM_TOKEN) to ${gw.url}`);
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  io.err('shutting down');
  await gw.close();
  return 0;
}

async function token(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const { values } = parse(rest, { home: { type: 'string' }, scopes: { type: 'string' }, roles: { type: 'string' }, ttl: { type: 'string' }, label: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum token create --scopes a,b [--roles client,node] [--ttl 30d] [--label L] [--json]');
      const scopes = listArg(values.scopes);
      if (!scopes || scopes.length === 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--scopes is required, e.g. --scopes operator.read,operator.write');
      const ttlSeconds = values.ttl === undefined ? undefined : parseTtl(values.ttl);
      const svc = openHome(resolveHome(values.home));
      try {
        const roles = listArg(values.roles);
        const created = await svc.tokens.create({ scopes, ...(roles ? { roles } : {}), ...(values.label !== undefined ? { label: values.label } : {}), ...(ttlSeconds !== undefined ? { ttlSeconds } : {}), createdBy: 'cli' });
        svc.audit.appendSync('token.created', cliActor(), { token_id: created.record.id, scopes: created.record.scopes, roles: created.record.roles, label: created.record.label, expires_at: created.record.expires_at });
        io.out(values.json ? JSON.stringify({ token: created.token, info: tokenInfo(created.record) }) : created.token);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum token list [--json]');
      const svc = openHome(resolveHome(values.home));
      try {
        const infos = svc.tokens.list().map(tokenInfo);
        if (values.json) io.out(JSON.stringify({ tokens: infos }));
        else {
          io.out(['ID', 'LABEL', 'SCOPES', 'ROLES', 'CREATED', 'EXPIRES', 'STATUS'].join('\t'));
          const now = Date.now();
          for (const t of infos) {
            const status = t.revoked_at ? 'revoked' : t.expires_at && Date.parse(t.expires_at) <= now ? 'expired' : 'active';
            io.out([t.token_id, t.label || '-', t.scopes.join(','), t.roles.join(','), t.created_at, t.expires_at ?? 'never', status].join('\t'));
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
      const svc = openHome(resolveHome(values.home));
      try {
        const { record: rec, descendants } = svc.tokens.revoke(id);
        svc.audit.appendSync('token.revoked', cliActor(), { token_id: id, descendants });
        for (const d of descendants) svc.audit.appendSync('token.revoked', cliActor(), { token_id: d, revoked_with: id });
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

async function audit(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'verify': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum audit verify [--json]');
      const svc = openHome(resolveHome(values.home), {}, { tamperedAudit: 'inspect' });
      try {
        const r = verifyAudit({ store: svc.store, verifier: svc.key, checkpointPath: svc.paths.auditCheckpoint });
        if (values.json) io.out(JSON.stringify(r));
        else if (r.ok) io.out(`audit chain ok: ${r.entries} entries, head ${r.head_hash.slice(0, 16)}…, checkpoint at ${r.checkpoint?.seq ?? 0}`);
        else if (r.tampered && r.first_bad === undefined) io.err(`audit log TAMPERED (accepted): ${r.reason}`);
        else io.err(`audit chain BROKEN: ${r.reason ?? 'unknown cause'}`);
        return r.ok ? 0 : 1;
      } finally {
        await svc.close();
      }
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, after: { type: 'string' }, limit: { type: 'string' }, type: { type: 'string' } });
      if (values.help) return usage(io, 'tyrum audit list [--after SEQ] [--limit N] [--type T] [--json]');
      const int = (v: string | undefined, name: string) => {
        if (v === undefined) return undefined;
        if (!/^\d+$/.test(v)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--${name} must be a non-negative integer`);
        return Number(v);
      };
      const svc = openHome(resolveHome(values.home), {}, { tamperedAudit: 'inspect' });
      try {
        const after = int(values.after, 'after');
        const limit = int(values.limit, 'limit');
        const entries = listAudit(svc.store, { ...(after !== undefined ? { after_seq: after } : {}), ...(limit !== undefined ? { limit } : {}), ...(values.type !== undefined ? { type: values.type } : {}) });
        for (const e of entries) io.out(values.json ? JSON.stringify(e) : `${e.seq}\t${e.ts}\t${e.type}\t${JSON.stringify(e.actor)}\t${JSON.stringify(e.data)}`);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case '--help':
      return usage(io, 'tyrum audit verify|list ... (tyrum audit SUBCOMMAND --help for each)');
    default:
      throw subcommandError('audit', sub);
  }
}

function usage(io: Io, text: string): number {
  io.out(`usage: ${text}`);
  return 0;
}

