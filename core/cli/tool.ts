/** `tyrum tool list|call`: through a running gateway, as a client would. */
import { TyrumError } from '../errors/index.js';
import { parse } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './main.js';

const USAGE = `usage:
  tyrum tool list [--json]
  tyrum tool call TOOL_ID --args '<json object>' [--json]
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
      const { values, positionals } = parse(rest, { ...CLIENT_FLAGS, args: { type: 'string' } }, 1);
      const toolId = positionals[0];
      if (values.help) return (io.out(USAGE), 0);
      if (toolId === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', USAGE);
      let args: unknown = {};
      if (values.args !== undefined) {
        try {
          args = JSON.parse(values.args);
        } catch {
          throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args must be a JSON object, e.g. --args \'{"text":"hi"}\'');
        }
      }
      if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args must be a JSON object');
      return withClient(values, async (client) => {
        const r = await client.request<{ output: unknown; duration_ms: number }>('tool.invoke', { tool_id: toolId, args: args as Record<string, unknown> }, { timeoutMs: 120_000 }).catch(remoteError);
        io.out(values.json ? JSON.stringify(r) : JSON.stringify(r.output, null, 2));
        return 0;
      });
    }
    default:
      if (sub === undefined || sub === 'help' || sub === '--help') return (io.out(USAGE), sub === undefined ? 2 : 0);
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown tool command "${sub}"\n${USAGE}`);
  }
}
