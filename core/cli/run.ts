/** `tyrum run list|get|cancel|resolve`: durable runs, through a running gateway. */
import { TyrumError } from '../errors/index.js';
import { parse } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './main.js';

const USAGE = `usage:
  tyrum run list [--state queued|running|paused|succeeded|failed|cancelled] [--json]
  tyrum run get RUN_ID [--json]                      steps, attempts and evidence
  tyrum run cancel RUN_ID
  tyrum run resolve RUN_ID STEP retry|skip|fail      an operator's call on a step whose outcome is unknown`;

export async function runCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { ...CLIENT_FLAGS, state: { type: 'string' } }, 3);
  if (values.help || sub === undefined) return (io.out(USAGE), sub === undefined ? 2 : 0);
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
        if (!positionals[0]) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', USAGE);
        const r = await req('run.get', { run_id: positionals[0] });
        io.out(JSON.stringify(r, null, values.json ? 0 : 2));
        return 0;
      }
      case 'cancel': {
        if (!positionals[0]) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', USAGE);
        const r = await req<{ run: { id: string; state: string } }>('run.cancel', { run_id: positionals[0] });
        io.out(`cancel requested for ${r.run.id} (now ${r.run.state})`);
        return 0;
      }
      case 'resolve': {
        const [runId, step, action] = positionals;
        if (!runId || step === undefined || !/^\d+$/.test(step) || !action) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', USAGE);
        const r = await req<{ run: { id: string; state: string } }>('run.resolve', { run_id: runId, step_idx: Number(step), action });
        io.out(`${action} step ${step} of ${r.run.id} (now ${r.run.state})`);
        return 0;
      }
      default:
        throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown run command "${sub}"\n${USAGE}`);
    }
  });
}
