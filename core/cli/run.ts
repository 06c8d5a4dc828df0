/** `tyrum run list|get|cancel|resolve`: durable runs, through a running gateway. */
import type { Static } from '@sinclair/typebox';
import type { RunDetail as RunDetailContract } from '../../schemas/index.js';
import { TyrumError } from '../errors/index.js';
import { parse, need, subcommandError } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum run list [--state queued|running|paused|succeeded|failed|cancelled] [--json]
  tyrum run get RUN_ID [--json]                      steps, attempts and evidence (--json: the whole record)
  tyrum run cancel RUN_ID
  tyrum run resolve RUN_ID STEP retry|skip|fail      an operator's call on a step whose outcome is unknown`;

export async function runCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { ...CLIENT_FLAGS, state: { type: 'string' } }, 3);
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  if (sub === undefined) throw subcommandError('run', sub);
  // Arguments are checked before connecting: a missing one is named even without a gateway.
  const forms: Record<string, string> = { get: 'tyrum run get RUN_ID [--json]', cancel: 'tyrum run cancel RUN_ID', resolve: 'tyrum run resolve RUN_ID STEP retry|skip|fail' };
  const form = Object.hasOwn(forms, sub) ? forms[sub] : undefined;
  if (form !== undefined) need(positionals[0], 'RUN_ID', form);
  if (sub === 'resolve') {
    const step = need(positionals[1], 'STEP', form!);
    need(positionals[2], 'retry|skip|fail', form!);
    if (!/^\d+$/.test(step)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `STEP must be a step number (0 for the first), got "${step}": usage: ${form!}`);
  }
  return withClient(values, async (client) => {
    const req = <R extends Record<string, unknown>>(type: string, payload: Record<string, unknown>) => client.request<R>(type, payload).catch(remoteError);
    switch (sub) {
      case 'list': {
        const r = await req<{ runs: Array<{ id: string; kind: string; state: string; created_at: string; pause_reason: string | null }> }>('run.list', values.state ? { state: values.state } : {});
        if (values.json) io.out(JSON.stringify(r));
        else for (const x of r.runs) io.out([x.id, x.kind, x.state + (x.pause_reason ? ` (${x.pause_reason})` : ''), x.created_at].join('\t'));
        return 0;
      }
      case 'get': {
        const r = await req<RunDetail>('run.get', { run_id: positionals[0]! });
        io.out(values.json ? JSON.stringify(r) : describeRun(r));
        return 0;
      }
      case 'cancel': {
        const r = await req<{ run: { id: string; state: string } }>('run.cancel', { run_id: positionals[0]! });
        io.out(`cancel requested for ${r.run.id} (now ${r.run.state})`);
        return 0;
      }
      case 'resolve': {
        const [runId, step, action] = positionals as [string, string, string];
        const r = await req<{ run: { id: string; state: string } }>('run.resolve', { run_id: runId, step_idx: Number(step), action });
        io.out(`${action} step ${step} of ${r.run.id} (now ${r.run.state})`);
        return 0;
      }
      default:
        throw subcommandError('run', sub);
    }
  });
}

/** run.get's answer, as the wire contract (schemas) describes it. */
type RunDetail = Static<typeof RunDetailContract>;

/** A value on one line, cut to `max` characters. */
function brief(v: unknown, max = 200): string {
  const text = JSON.stringify(v) ?? 'null';
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars; --json for all)` : text;
}

/** `tyrum run get` for a person: the run, then each step with its decision, approval, attempts and outcome. */
function describeRun(r: RunDetail): string {
  const run = r.run;
  const lines = [
    `run ${run.id} (${run.kind}): ${run.state}${run.pause_reason ? ` (waits: ${run.pause_reason})` : ''}${run.cancel_requested ? ', cancel requested' : ''}`,
    `  created ${run.created_at} by ${run.created_by}${run.finished_at ? `; finished ${run.finished_at}` : ''}`,
  ];
  if (run.error) lines.push(`  error: ${run.error.message} [${run.error.code}]`);
  for (const s of r.steps) {
    lines.push(`step ${s.idx}: ${s.tool_id} ${s.state}${s.duration_ms !== null ? ` in ${Math.round(s.duration_ms)} ms` : ''}`);
    lines.push(`  args: ${brief(s.args)}`);
    if (s.policy) lines.push(`  policy: ${s.policy.decision}${s.policy.enforced ? '' : ' (observed, not enforced)'} by snapshot ${s.policy.snapshot_id}`);
    if (s.approval_id) lines.push(`  approval: ${s.approval_id}`);
    if (s.definition_hash || s.plugin_digest) lines.push(`  tool definition ${s.definition_hash?.slice(0, 16) ?? '-'}…, plugin digest ${s.plugin_digest?.slice(0, 16) ?? '-'}…`);
    for (const a of s.attempts) {
      lines.push(`  attempt ${a.n}: ${a.state} at ${a.started_at}${a.duration_ms !== null ? ` (${Math.round(a.duration_ms)} ms)` : ''}${a.error ? `: ${a.error.message} [${a.error.code}]` : ''}`);
      if (a.evidence !== null && a.evidence !== undefined) lines.push(`    evidence: ${brief(a.evidence, 800)}`);
    }
    if (s.error) lines.push(`  error: ${s.error.message} [${s.error.code}]`);
    else if (s.state === 'succeeded') lines.push(`  result: ${brief(s.result)}`);
  }
  return lines.join('\n');
}
