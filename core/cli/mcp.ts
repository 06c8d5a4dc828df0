/**
 * `tyrum mcp ...`: declare external MCP servers (quarantined), review their tools, approve
 * them (pinning each definition's hash), see what changed, remove them. Works on the gateway
 * home directly; a running gateway picks changes up within a second.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { TyrumError, isTyrumError } from '../errors/index.js';
import type { McpToolDiff, McpServerView } from '../mcp/registry.js';
import { parse, listArg, need, subcommandError } from './args.js';
import { cliActor as actor, withHome, intArg } from './home.js';
import type { Io } from './io.js';

/** Probing talks to the server through the MCP SDK, which only the commands that probe load. */
const probeServer: typeof import('../mcp/probe.js').probeServer = async (...args) => (await import('../mcp/probe.js')).probeServer(...args);

const USAGE = `usage:
  tyrum mcp add NAME [--description D] [--env K=V]... [--inherit-env N,...] [--timeout MS] [--max-output BYTES] [--no-probe] -- COMMAND [ARG...]
                                                            a stdio server (started by the gateway with a minimal environment)
  tyrum mcp add NAME --url URL [--header K=V]... [--timeout MS] [--max-output BYTES] [--no-probe]
                                                            a Streamable HTTP server
  tyrum mcp add NAME --spec FILE                            the server spec as JSON (schemas/json/mcp.server.json)
  tyrum mcp list [--json]                                   servers, their state and tool counts
  tyrum mcp tools NAME [--json]                             a server's tools with their status
  tyrum mcp diff NAME [--refresh] [--all] [--json]          what awaits review: new tools, changed definitions (rug pulls), refused schemas
  tyrum mcp approve NAME [--tool T]... [--read-only T,...] [--json]
                                                            approve the server and pin the definitions it lists now
  tyrum mcp remove NAME

Values of --env and --header may contain {{secret:NAME}} handles (tyrum secret set NAME ...).
New servers and changed tool definitions stay quarantined until approved. Approved tools are
state_changing (each call needs an approval under the default policy) unless named in --read-only;
a server's own annotations (readOnlyHint, ...) are shown as hints and never trusted.`;

/** The options of `tyrum mcp add`; the same words after `--` go to the server, which is worth a warning. */
const ADD_OPTIONS = {
  home: { type: 'string' },
  description: { type: 'string' },
  url: { type: 'string' },
  header: { type: 'string', multiple: true },
  env: { type: 'string', multiple: true },
  'inherit-env': { type: 'string' },
  timeout: { type: 'string' },
  'max-output': { type: 'string' },
  spec: { type: 'string' },
  'no-probe': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/**
 * A stdio command as typed, with its relative paths made absolute against `cwd` (the directory
 * `tyrum mcp add` runs in): the gateway starts the server in its own directory in the home, where
 * `node node_modules/x/index.js` would name nothing. Resolved: the command when it contains a slash
 * (a bare name such as `node` or `npx` stays for PATH lookup), and each argument that is not an
 * option and names a file or folder that exists here (a word naming nothing, such as `stdio`, stays).
 */
export function resolveCommandPaths(command: readonly string[], cwd: string): { command: string[]; resolved: string[] } {
  const resolved: string[] = [];
  const out = command.map((word, i) => {
    if (word.length === 0 || isAbsolute(word) || word.startsWith('-') || word.startsWith('~')) return word;
    const full = resolve(cwd, word);
    const isPath = i === 0 ? word.includes('/') : existsSync(full) && (word.includes('/') || statSync(full).isFile());
    if (!isPath) return word;
    resolved.push(word);
    return full;
  });
  return { command: out, resolved };
}

function usage(io: Io): number {
  io.out(USAGE);
  return 0;
}

/** `K=V` pairs (repeatable flag) into a record; the value may itself contain '='. */
function pairs(list: string[] | undefined, flag: string): Record<string, string> | undefined {
  if (!list || list.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--${flag} "${item.slice(0, 60)}": expected NAME=VALUE`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}


function counts(s: McpServerView): string {
  const t = s.tools;
  return `${t.approved} approved, ${t.pending} pending, ${t.changed} changed, ${t.refused} refused${t.removed ? `, ${t.removed} removed` : ''}`;
}

function health(s: McpServerView): string {
  if (!s.health) return '-';
  const h = s.health as { status?: string; error?: string };
  return h.error ? `${h.status}: ${String(h.error).slice(0, 120)}` : String(h.status ?? '-');
}

function short(v: unknown, max = 1500): string {
  const text = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, null, 2);
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}

function renderDiff(d: McpToolDiff): string[] {
  const head: Record<McpToolDiff['status'], string> = {
    pending: 'new, not approved yet',
    changed: 'CHANGED since approval: hidden until re-approved',
    refused: 'REFUSED at registration',
    removed: 'no longer listed by the server',
    approved: 'approved',
  };
  const lines = [`${d.tool_id}  ${head[d.status]}`];
  if (d.refused) lines.push(`  reason: ${d.refused}`);
  if (d.status === 'pending' && d.observed) {
    lines.push(`  description: ${short(d.observed.description ?? '')}`);
    lines.push(`  inputSchema: ${short(d.observed.inputSchema).replace(/\n/g, '\n  ')}`);
    if (d.observed.outputSchema) lines.push(`  outputSchema: ${short(d.observed.outputSchema).replace(/\n/g, '\n  ')}`);
    if (d.observed.annotations) lines.push(`  hints (not trusted): ${JSON.stringify(d.observed.annotations).slice(0, 500)}`);
  } else if (d.status === 'changed' || d.status === 'approved') {
    for (const f of d.fields) {
      lines.push(`  ${f.field}:`);
      lines.push(`    - approved: ${short(f.approved).replace(/\n/g, '\n      ')}`);
      lines.push(`    + now:      ${short(f.observed).replace(/\n/g, '\n      ')}`);
    }
  }
  return lines;
}

export async function mcp(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'add': {
      const dd = rest.indexOf('--');
      const flags = dd >= 0 ? rest.slice(0, dd) : rest;
      const command = dd >= 0 ? rest.slice(dd + 1) : [];
      const { values, positionals } = parse(flags, ADD_OPTIONS, 1);
      if (values.help) return usage(io);
      const name = need(positionals[0], 'NAME', 'tyrum mcp add NAME -- COMMAND [ARG...] | tyrum mcp add NAME --url URL');
      const kinds = [command.length > 0, values.url !== undefined, values.spec !== undefined].filter(Boolean).length;
      if (kinds !== 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'give exactly one of: -- COMMAND [ARG...] (stdio), --url URL (Streamable HTTP), --spec FILE');
      let spec: Record<string, unknown>;
      let resolvedNote: string | null = null;
      if (values.spec !== undefined) {
        try {
          spec = JSON.parse(readFileSync(values.spec, 'utf8')) as Record<string, unknown>;
        } catch (e) {
          throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--spec ${values.spec}: ${(e as Error).message}`);
        }
      } else {
        const limits = { ...(values.timeout !== undefined ? { call_timeout_ms: intArg(values.timeout, 'timeout') } : {}), ...(values['max-output'] !== undefined ? { max_output_bytes: intArg(values['max-output'], 'max-output') } : {}) };
        if (values.url !== undefined) {
          if (values.env || values['inherit-env']) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--env and --inherit-env apply to stdio servers only');
          const headers = pairs(values.header, 'header');
          spec = { transport: 'streamable_http', url: values.url, ...(headers ? { headers } : {}), ...limits };
        } else {
          if (values.header) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--header applies to HTTP servers only');
          const env = pairs(values.env, 'env');
          const inherit = listArg(values['inherit-env']);
          for (const word of new Set(command.slice(1).map((w) => /^--([a-z-]+)(=|$)/.exec(w)?.[1]))) {
            if (word !== undefined && Object.hasOwn(ADD_OPTIONS, word)) io.err(`warning: --${word} comes after --, so it was passed to the server, not to tyrum; put tyrum's options before --`);
          }
          const cwd = process.cwd();
          const paths = resolveCommandPaths(command, cwd);
          if (paths.resolved.length > 0) resolvedNote = `  relative paths resolved against ${cwd}: ${paths.resolved.join(', ')}`;
          spec = { transport: 'stdio', command: paths.command[0]!, ...(command.length > 1 ? { args: paths.command.slice(1) } : {}), ...(env ? { env } : {}), ...(inherit ? { inherit_env: inherit } : {}), ...limits };
        }
      }
      return withHome(values.home, async (svc) => {
        const view = await svc.mcp.add({ name, spec, ...(values.description !== undefined ? { description: values.description } : {}) }, actor());
        let probe: Awaited<ReturnType<typeof probeServer>> | null = null;
        let probeError: string | null = null;
        if (!values['no-probe']) {
          try {
            probe = await probeServer(svc.mcp, svc.store, name);
          } catch (e) {
            probeError = isTyrumError(e) || e instanceof Error ? e.message : String(e);
            svc.mcp.recordHealth(name, { status: 'probe_failed', error: String(svc.redactor.redactDeep(probeError)) });
          }
        }
        if (values.json) io.out(JSON.stringify({ server: svc.mcp.get(name), probe, probe_error: probeError }));
        else {
          io.out(`added MCP server ${name} (${view.transport}; quarantined until approved)`);
          if (resolvedNote) io.out(resolvedNote);
          if (probe) {
            io.out(`  listed ${probe.tools} tools${probe.summary.refused.length > 0 ? `; ${probe.summary.refused.length} refused: ${probe.summary.refused.map((r) => `${r.name} (${r.reason})`).join('; ')}` : ''}`);
            io.out(`next: tyrum mcp diff ${name}   then   tyrum mcp approve ${name} [--read-only TOOL,...]`);
          }
        }
        if (probeError) io.err(`warning: could not list the server's tools now: ${String(svc.redactor.redactDeep(probeError))}\n  the server stays declared; a running gateway keeps retrying (tyrum mcp list shows its health)`);
        return 0;
      });
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io);
      return withHome(values.home, async (svc) => {
        const list = svc.mcp.list();
        if (values.json) io.out(JSON.stringify({ servers: list }));
        else {
          io.out(['NAME', 'ORIGIN', 'TRANSPORT', 'STATE', 'TOOLS', 'HEALTH'].join('\t'));
          for (const s of list) io.out([s.name, s.origin, s.transport, s.state, counts(s), health(s)].join('\t'));
        }
        return 0;
      });
    }
    case 'tools': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } }, 1);
      if (values.help) return usage(io);
      const name = need(positionals[0], 'NAME', 'tyrum mcp tools NAME [--json]');
      return withHome(values.home, async (svc) => {
        const tools = svc.mcp.tools(name);
        if (values.json) io.out(JSON.stringify({ server: name, tools }));
        else {
          io.out(['TOOL_ID', 'STATUS', 'EFFECT', 'HINTS (untrusted)'].join('\t'));
          for (const t of tools) io.out([t.tool_id, t.status, t.status === 'approved' ? t.effect : '-', t.hints ? JSON.stringify(t.hints) : '-'].join('\t'));
        }
        return 0;
      });
    }
    case 'diff': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, all: { type: 'boolean' }, refresh: { type: 'boolean' } }, 1);
      if (values.help) return usage(io);
      const name = need(positionals[0], 'NAME', 'tyrum mcp diff NAME [--refresh] [--all] [--json]');
      return withHome(values.home, async (svc) => {
        if (values.refresh) {
          const view = svc.mcp.get(name);
          if (view.origin !== 'operator' || view.transport === 'wasm') throw new TyrumError('TYRUM_ERR_INVALID_STATE', `--refresh works for operator-declared stdio and HTTP servers; ${name} is listed by the running gateway`);
          await probeServer(svc.mcp, svc.store, name);
        }
        const diffs = svc.mcp.diff(name, { all: values.all ?? false });
        const view = svc.mcp.get(name);
        if (values.json) io.out(JSON.stringify({ server: name, state: view.state, spec: view.spec, tools: diffs }));
        else {
          io.out(`${name}: ${view.state} (${view.origin}, ${view.transport}); ${counts(view)}`);
          if (view.state !== 'approved') io.out(`  spec: ${JSON.stringify(view.spec)}`);
          if (diffs.length === 0) io.out('nothing awaits review');
          for (const d of diffs) io.out(renderDiff(d).join('\n'));
        }
        return 0;
      });
    }
    case 'approve': {
      const { values, positionals } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, tool: { type: 'string', multiple: true }, 'read-only': { type: 'string' } }, 1);
      if (values.help) return usage(io);
      const name = need(positionals[0], 'NAME', 'tyrum mcp approve NAME [--tool T]... [--read-only T,...]');
      return withHome(values.home, async (svc) => {
        const readOnly = listArg(values['read-only']) ?? [];
        const r = await svc.mcp.approve(name, { ...(values.tool ? { tools: values.tool } : {}), readOnly }, actor());
        if (values.json) io.out(JSON.stringify(r));
        else {
          io.out(`approved ${name}: ${r.approved.length} tool${r.approved.length === 1 ? '' : 's'} pinned`);
          for (const a of r.approved) io.out(`  ${a.tool_id}\t${a.effect}\tsha256:${a.definition_hash.slice(0, 16)}…`);
          for (const s of r.skipped) io.out(`  skipped ${s.name}: ${s.reason}`);
        }
        return r.approved.length === 0 && r.skipped.length > 0 ? 1 : 0;
      });
    }
    case 'remove': {
      const { values, positionals } = parse(rest, { home: { type: 'string' } }, 1);
      if (values.help) return usage(io);
      const name = need(positionals[0], 'NAME', 'tyrum mcp remove NAME');
      return withHome(values.home, async (svc) => {
        await svc.mcp.remove(name, actor());
        io.out(`removed MCP server ${name}`);
        return 0;
      });
    }
    case '--help':
      return usage(io);
    default:
      throw subcommandError('mcp', sub);
  }
}
