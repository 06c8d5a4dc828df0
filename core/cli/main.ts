/**
 * The `tyrum` command line. Conventional and scriptable: results on stdout (`--json` where a
 * script wants it), diagnostics on stderr, exit 0 on success, 1 on failure, 2 on usage errors.
 * Each command's module is imported when that command runs, so a command loads only what it uses:
 * `tyrum ping` or `tyrum tool list` load the client, not the kernel, the sandbox or any schema
 * (test/core/cli/loads.test.ts checks it). Keep this module's own imports that light.
 */
import { TyrumError, isTyrumError } from '../errors/index.js';
import { packageInfo } from '../util/package-info.js';
import { closest, COMMANDS, subcommandError } from './args.js';
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
  ui [--scopes a,b] [--ttl 30d] [--bootstrap] [--json]       a sign-in link for the web UI (token in the URL fragment);
                                                             --bootstrap: also a tyrum://bootstrap payload for a mobile node

Tokens
  token create --scopes a,b [--roles client,node] [--ttl 30d] [--label L] [--tenant T] [--json]
                                                             mint a token (in tenant T; default: the host's); prints it alone on stdout
  token list [--tenant T] [--json]                           list tokens (never their secrets)
  token revoke ID                                            revoke; open sockets close within 1 s
  tenant create ID [--label L] | tenant list [--json]        tenants (docs/tenancy.md); a token of one sees nothing of another

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
  secret ... --tenant ID                                     a tenant's own handles (default: the host's)

Policy and approvals (work on the home; a running gateway picks changes up)
  policy show | policy set FILE | policy explain TOOL_ID [--args JSON] | policy override-revoke ID [--tenant T]
  approvals list [--all] | approvals approve ID [--always] [--reason R] | approvals deny ID [--reason R]

Nodes (work on the home; a running gateway delivers tokens and closes nodes at once)
  node enroll [--ttl 1h]                                     an enrollment token a node connects with to ask to be paired
  node list [--all] | node approve PAIRING_ID --allow CAP,... [--read-only CAP,...] [--trust local|remote] [--name N]
  node deny PAIRING_ID | node revoke PAIRING_ID|NAME

Runs (through a running gateway)
  run list [--state S] | run get ID | run cancel ID | run resolve ID STEP retry|skip|fail
  artifact list --run RUN_ID | artifact get ARTIFACT_ID --out FILE   evidence blobs of runs (sha256-checked download)

MCP servers (work on the home; a running gateway picks changes up)
  mcp add NAME [--env K=V]... -- COMMAND [ARG...]            declare a stdio server (quarantined; its tools listed for review)
  mcp add NAME --url URL [--header K=V]...                   declare a Streamable HTTP server
  mcp list | mcp tools NAME | mcp diff NAME [--refresh] | mcp approve NAME [--read-only T,..] | mcp remove NAME

Agent and channels
  backend set --base-url URL --model NAME [--api-key-secret H] [--tools GLOB,..] [--max-steps N]
                                                             the model endpoint turns use (OpenAI-compatible: OpenAI, Ollama, vLLM, ...)
  backend show | backend test [--prompt TEXT]                show it; one real request to it
  chat [--conversation ID] [--message TEXT]                  talk to the agent through the running gateway
  channel add PLUGIN NAME --verify-secret H [--credential-secret H] [--api-base URL] [--dm pairing|allowlist|open]
  channel list | channel remove PLUGIN/NAME
  channel senders PLUGIN/NAME [--approve CODE|ID | --deny CODE|ID | --remove ID]

Schedules (work on the home; a running gateway fires them, once per tick)
  schedule add NAME (--cron EXPR [--tz ZONE] | --every 5m | --heartbeat 30m) (--tool ID [--args JSON] | --prompt TEXT)
               [--missed skip|catch_up_once]                 a tool call or an agent turn on a timetable
  schedule list [--json] | schedule pause NAME | schedule resume NAME | schedule remove NAME
  schedule next NAME [--count N]                             the next fire times, in the schedule's zone and UTC

Playbooks (check works on the file; the rest through a running gateway)
  playbook check FILE [--input K=V]...                       validate; print the compiled plan and its hash
  playbook run FILE [--input K=V]...                         start a workflow; exit 3 while it waits at a gate
  playbook resume TOKEN [--deny] | playbook get ID | playbook list | playbook cancel ID

Audit and retention
  audit verify [--json]                                      verify the hash chain; exit 1 naming the first bad entry
  audit verify --archive FILE [--key-id ID] [--json]         verify an archive offline (chain + signed checkpoint)
  audit list [--after SEQ] [--limit N] [--type T] [--json]   print audit entries
  audit archive --out FILE [--json]                          write the whole log with its signed checkpoint to FILE
  gc [--dry-run] [--json]                                    remove what the retention policy says has expired;
                                                             --dry-run shows what would go

Every command takes --home DIR (default $TYRUM_HOME or ~/.tyrum).
Scopes: operator.read, operator.write, operator.approvals, operator.pairing, operator.admin,
operator.metrics (GET /metrics only: for a Prometheus scraper).`;

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
        return await (await import('./start.js')).start(rest, io);
      case 'token':
        return await (await import('./token.js')).token(rest, io);
      case 'tenant':
        return await (await import('./tenant.js')).tenant(rest, io);
      case 'audit':
        return await (await import('./audit.js')).audit(rest, io);
      case 'gc':
        return await (await import('./gc.js')).gc(rest, io);
      case 'doctor':
        return await (await import('./doctor.js')).doctor(rest, io);
      case 'ping':
        return await (await import('./ping.js')).ping(rest, io);
      case 'plugin':
        return await (await import('./plugin.js')).plugin(rest, io);
      case 'tool':
        return await (await import('./tool.js')).tool(rest, io);
      case 'secret':
        return await (await import('./secret.js')).secret(rest, io);
      case 'policy':
        return await (await import('./governance.js')).policyCmd(rest, io);
      case 'approvals':
        return await (await import('./governance.js')).approvalsCmd(rest, io);
      case 'run':
        return await (await import('./run.js')).runCmd(rest, io);
      case 'artifact':
        return await (await import('./artifact.js')).artifactCmd(rest, io);
      case 'node':
        return await (await import('./node.js')).nodeCmd(rest, io);
      case 'mcp':
        return await (await import('./mcp.js')).mcp(rest, io);
      case 'channel':
        return await (await import('./channel.js')).channelCmd(rest, io);
      case 'backend':
        return await (await import('./backend.js')).backendCmd(rest, io);
      case 'chat':
        return await (await import('./chat.js')).chatCmd(rest, io);
      case 'ui':
        return await (await import('./ui.js')).uiCmd(rest, io);
      case 'schedule':
        return await (await import('./schedule.js')).scheduleCmd(rest, io);
      case 'playbook':
        return await (await import('./playbook.js')).playbookCmd(rest, io);
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
