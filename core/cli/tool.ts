/** `tyrum tool list|call`: through a running gateway, as a client would. */
import { TyrumError } from '../errors/index.js';
import { parse, need, subcommandError } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum tool list [--json]
  tyrum tool call TOOL_ID --args '<json object>' [--idempotency-key K] [--wait-ms N] [--json]
    exit 0: the run succeeded (output printed); 1: it failed; 3: it waits (for approval or an operator)
(both take --url, --token (default $TYRUM_TOKEN) and --home)`;

export async function tool(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'list': {
      const { values } = parse(rest, CLIENT_FLAGS);
      if (values.help) return (io.out(USAGE), 0);
      return withClient(values, async (client) => {
        const r = await client.request<{ tools: Array<{ tool_id: string; effect: string; description: string; definition_hash: string }> }>('tool.list', {}).catch(remoteError);
        if (values.json) io.out(JSON.stringify(r));
        else for (const t of r.tools) io.out(`${t.tool_id}\t${t.effect}\t${t.definition_hash.slice(0, 12)}\t${t.description}`);
        return 0;
      });
    }
    case 'call': {
      const { values, positionals } = parse(rest, { ...CLIENT_FLAGS, args: { type: 'string' }, 'idempotency-key': { type: 'string' }, 'wait-ms': { type: 'string' } }, 1);
      if (values.help) return (io.out(USAGE), 0);
      const toolId = need(positionals[0], 'TOOL_ID', "tyrum tool call TOOL_ID --args '<json object>'");
      let args: unknown = {};
      if (values.args !== undefined) {
        try {
          args = JSON.parse(values.args);
        } catch {
          throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args must be a JSON object, e.g. --args \'{"text":"hi"}\'');
        }
      }
      if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args must be a JSON object');
      const waitMs = values['wait-ms'] === undefined ? 30_000 : Number(values['wait-ms']);
      if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > 120_000) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--wait-ms must be an integer from 0 to 120000');
      return withClient(values, async (client) => {
        const payload: Record<string, unknown> = { tool_id: toolId, args: args as Record<string, unknown>, wait_ms: waitMs };
        if (values['idempotency-key'] !== undefined) payload.idempotency_key = values['idempotency-key'];
        const r = await client
          .request<{ run_id: string; state: string; output: unknown; error: { code: string; message: string } | null; approval_id: string | null }>('tool.invoke', payload, { timeoutMs: waitMs + 30_000 })
          .catch(remoteError);
        if (values.json) io.out(JSON.stringify(r));
        if (r.state === 'succeeded') {
          if (!values.json) io.out(JSON.stringify(r.output, null, 2));
          return 0;
        }
        if (r.state === 'paused' || r.state === 'queued' || r.state === 'running') {
          const next = r.approval_id ? `waits for approval ${r.approval_id}; approve with: tyrum approvals approve ${r.approval_id}` : `is ${r.state}; follow it with: tyrum run get ${r.run_id}`;
          io.err(`run ${r.run_id} ${next}`);
          return 3;
        }
        io.err(`run ${r.run_id} ${r.state}: ${r.error ? `${r.error.message} [${r.error.code}]` : 'no error recorded'}`);
        return 1;
      });
    }
    case '--help':
      return (io.out(USAGE), 0);
    default:
      throw subcommandError('tool', sub);
  }
}
