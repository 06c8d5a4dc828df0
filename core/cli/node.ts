/**
 * `tyrum node ...`: node enrollment and pairing, on the gateway home directly (like `tyrum
 * approvals`). A running gateway picks decisions up at once: it delivers an approved node its
 * token, and closes denied and revoked nodes within a second. Decisions work with the gateway
 * down too; the node gets its token at its next connection.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TyrumError } from '../errors/index.js';
import { parseTtl } from '../auth/tokens.js';
import { isoTimes } from '../util/iso-times.js';
import { parse, need, subcommandError } from './args.js';
import { cliActor as who, withHomeCore } from './home.js';
import type { Io } from './io.js';
import type { Pairing } from '../nodes/pairing.js';
import { PAIRING_STATES, type PairingState } from '../store/nodes.js';

const USAGE = `usage:
  tyrum node enroll [--ttl 1h] [--label L] [--json]     an enrollment token (role node, no scope, expiring): a node
                                                      connects with it to ask to be paired; printed once
  tyrum node list [--all | --state S] [--json]          pairings waiting for an operator and approved ones
  tyrum node approve PAIRING_ID --allow CAP[@VER],... [--read-only CAP,...] [--trust local|remote]
                     [--name NAME] [--reason R]         approve (or change an approved node's allowlist)
  tyrum node deny PAIRING_ID [--reason R]
  tyrum node revoke PAIRING_ID|NAME [--reason R]        its token dies; its connections close within a second
  tyrum node run --workspace DIR [--gateway URL] [--allow-exec CMD,...] [--no-write] [--state-dir DIR] [--label L]
                                                      run a headless node on this machine: fs.list/read/search
                                                      (and fs.write unless --no-write) confined to DIR, shell.exec
                                                      for the named commands only; the enrollment token comes from
                                                      $TYRUM_NODE_ENROLLMENT_TOKEN until the node is paired`;

const ENROLL_TTL_DEFAULT = '1h';

export async function nodeCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(
    rest,
    {
      home: { type: 'string' },
      json: { type: 'boolean' },
      all: { type: 'boolean' },
      state: { type: 'string' },
      ttl: { type: 'string' },
      label: { type: 'string' },
      allow: { type: 'string' },
      'read-only': { type: 'string' },
      trust: { type: 'string' },
      name: { type: 'string' },
      reason: { type: 'string' },
      gateway: { type: 'string' },
      url: { type: 'string' },
      workspace: { type: 'string' },
      'allow-exec': { type: 'string' },
      'no-write': { type: 'boolean' },
      'state-dir': { type: 'string' },
    },
    1,
  );
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  if (sub === 'run') return runNode(values, io);
  return withHomeCore(values.home, async (svc) => {
    const reason = values.reason !== undefined ? { reason: values.reason } : {};
    switch (sub) {
      case 'enroll': {
        const ttlSeconds = parseTtl(values.ttl ?? ENROLL_TTL_DEFAULT);
        const { token, record } = await svc.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds, label: values.label ?? 'node enrollment', createdBy: 'cli' });
        svc.audit.appendSync('token.created', who(), { token_id: record.id, kind: record.kind, roles: record.roles, scopes: record.scopes, expires_at: record.expires_at });
        const expires = new Date(record.expires_at!).toISOString();
        if (values.json) io.out(JSON.stringify({ token, token_id: record.id, expires_at: expires }));
        else {
          io.out(token);
          io.err(`enrollment token ${record.id} (expires ${expires}): a node connects with it to ask to be paired; then: tyrum node list`);
        }
        return 0;
      }
      case 'list': {
        if (values.all && values.state !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--all and --state exclude each other');
        if (values.state !== undefined && !(PAIRING_STATES as readonly string[]).includes(values.state)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--state must be one of ${PAIRING_STATES.join(', ')}`);
        const all = svc.pairings.list(values.state !== undefined ? { state: values.state as PairingState } : {});
        const shown = values.all || values.state !== undefined ? all : all.filter((p) => p.state === 'awaiting_human' || p.state === 'approved');
        if (values.json) io.out(JSON.stringify({ pairings: isoTimes(shown) }));
        else {
          io.out(['PAIRING', 'STATE', 'NAME', 'TRUST', 'DEVICE', 'LABEL', 'ADDRESS', 'CAPABILITIES'].join('\t'));
          for (const p of shown) io.out([p.pairing_id, p.state, p.node_name ?? '-', p.trust_level ?? '-', p.device_id, p.label ?? '-', p.remote_address, capabilities(p)].join('\t'));
          if (shown.some((p) => p.state === 'awaiting_human')) io.err('approve with: tyrum node approve PAIRING_ID --allow CAP,... [--read-only CAP,...]');
        }
        return 0;
      }
      case 'approve': {
        const id = need(positionals[0], 'PAIRING_ID', 'tyrum node approve PAIRING_ID --allow CAP,...');
        if (values.allow === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--allow is required: the capabilities this node may run (--allow "" for none)');
        const trust = values.trust ?? 'remote';
        if (trust !== 'local' && trust !== 'remote') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--trust must be local or remote');
        const allow = list(values.allow).map((c) => {
          const at = c.lastIndexOf('@');
          return at > 0 ? { id: c.slice(0, at), version: c.slice(at + 1) } : { id: c };
        });
        const p = svc.pairings.approve(id, { trust_level: trust, capability_allowlist: allow, read_only: list(values['read-only'] ?? ''), ...(values.name !== undefined ? { node_name: values.name } : {}), ...reason }, who());
        if (values.json) io.out(JSON.stringify({ pairing: isoTimes(p) }));
        else io.out(`approved ${p.pairing_id}: node ${p.node_name} (${p.trust_level}), capabilities ${capabilities(p)}\nthe gateway delivers the node its token when it is connected`);
        return 0;
      }
      case 'deny': {
        const id = need(positionals[0], 'PAIRING_ID', 'tyrum node deny PAIRING_ID');
        const p = svc.pairings.deny(id, reason, who());
        io.out(values.json ? JSON.stringify({ pairing: isoTimes(p) }) : `denied ${p.pairing_id}`);
        return 0;
      }
      case 'revoke': {
        const which = need(positionals[0], 'PAIRING_ID|NAME', 'tyrum node revoke PAIRING_ID|NAME');
        const id = which.startsWith('pair_') ? which : svc.store.pairings.byName(which)?.id;
        if (id === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no approved node named ${which}`);
        const p = svc.pairings.revoke(id, reason, who());
        io.out(values.json ? JSON.stringify({ pairing: isoTimes(p) }) : `revoked ${p.pairing_id}${p.node_name ? ` (${p.node_name})` : ''}${p.token_id ? `; its token ${p.token_id} is dead` : ''}`);
        return 0;
      }
      default:
        throw subcommandError('node', sub);
    }
  });
}

/** `tyrum node run`: a headless node in the foreground until SIGINT/SIGTERM. */
async function runNode(values: Record<string, string | boolean | undefined>, io: Io): Promise<number> {
  const workspace = values.workspace;
  if (typeof workspace !== 'string') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--workspace DIR is required: the directory the node may read and write');
  const url = (values.gateway ?? values.url ?? process.env.TYRUM_URL ?? 'ws://127.0.0.1:8788/ws') as string;
  const stateDir = typeof values['state-dir'] === 'string' ? values['state-dir'] : process.env.TYRUM_NODE_HOME ?? join(homedir(), '.tyrum-node');
  const enrollmentToken = process.env.TYRUM_NODE_ENROLLMENT_TOKEN;
  const { startHeadlessNode, nodeStatePaths } = await import('../../sdk/node/headless/run.js');
  if (!enrollmentToken && !existsSync(nodeStatePaths(stateDir).token)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `this node has no token yet (none in ${stateDir}): pair it with an enrollment token, export TYRUM_NODE_ENROLLMENT_TOKEN=$(tyrum node enroll)`);
  }
  let ended!: (code: number) => void;
  const done = new Promise<number>((resolve) => (ended = resolve));
  const started = await startHeadlessNode({
    url,
    workspace,
    stateDir,
    ...(enrollmentToken ? { enrollmentToken } : {}),
    ...(typeof values['allow-exec'] === 'string' ? { allowExec: list(values['allow-exec']) } : {}),
    readOnly: values['no-write'] === true,
    ...(typeof values.label === 'string' ? { label: values.label } : {}),
    onStatus: (st) => {
      if (st.state === 'waiting_for_approval') io.err('waiting for an operator: tyrum node list, then tyrum node approve PAIRING_ID --allow ...');
      else if (st.state === 'paired') io.err(`paired as ${st.node_name}; node token stored; reconnecting with it`);
      else if (st.state === 'connected') io.err(`connected to ${url} with the ${st.with === 'node_token' ? 'node token' : 'enrollment token'}`);
      else if (st.state === 'revoked') io.err('the pairing was revoked: the node token is deleted');
      else {
        io.err(`stopped: ${st.reason}`);
        ended(st.reason === 'interrupted' ? 0 : 1);
      }
    },
  }).catch((e: unknown) => {
    // A bad workspace, command or missing token is the user's to fix (exit 2); anything else is
    // the connection (gateway down, token refused).
    const usage = (e as { name?: unknown }).name === 'NodeTaskError';
    throw new TyrumError(usage ? 'TYRUM_ERR_INVALID_ARGUMENT' : 'TYRUM_ERR_CONNECTION', `the node could not start: ${e instanceof Error ? e.message : String(e)}`);
  });
  io.err(`node offering ${started.capabilities.join(', ')} in ${workspace}`);
  const stop = () => void started.node.stop('interrupted');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const code = await done;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return code;
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Allowed capabilities of an approved pairing (read-only marked), or what a waiting node advertised. */
function capabilities(p: Pairing): string {
  if (p.state === 'approved') return p.capability_allowlist.map((c) => `${c.id}@${c.version}${c.read_only ? '(ro)' : ''}`).join(',') || 'none';
  return `advertised: ${p.advertised.map((c) => `${c.id}@${c.version}`).join(',') || 'nothing'}`;
}
