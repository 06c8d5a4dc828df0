/**
 * `tyrum chat`: a terminal conversation with the agent through a running gateway. Each line read
 * from standard input is sent (conversation.send); the answer streams in (message.delta), tool
 * calls and their results are shown, and a tool call waiting for an approval is shown with the
 * command that approves it (from another terminal: the chat itself never approves). With input
 * from a pipe, each line waits for its turn to end before the next is sent, so a script works.
 */
import { createInterface } from 'node:readline';
import { TyrumError } from '../errors/index.js';
import { parse } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum chat [--conversation CONV_ID] [--title T] [--message TEXT] [--json]
        chat with the agent through the running gateway (token: --token or $TYRUM_TOKEN, scopes
        operator.write and operator.read). Lines from stdin are messages; --message sends one and exits.
        Tool calls that need an approval wait: approve from another terminal with
        tyrum approvals approve ID (the id is printed).`;

/**
 * Model and tool text as printed: no terminal control sequences (a model could otherwise move the
 * cursor, retitle the terminal or draw a fake approval line over the real one).
 */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, '');
}

interface EventPayload {
  conversation_id?: string;
  turn_id?: string;
  [k: string]: unknown;
}

export async function chatCmd(argv: string[], io: Io, input: NodeJS.ReadableStream = process.stdin): Promise<number> {
  const { values } = parse(argv, { ...CLIENT_FLAGS, conversation: { type: 'string' }, title: { type: 'string' }, message: { type: 'string' } }, 0);
  if (values.help) return (io.out(USAGE), 0);
  if (values.conversation !== undefined && !/^conv_[0-9a-f]{16}$/.test(values.conversation)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--conversation must be a conversation id (conv_...)');
  return withClient(values, async (client) => {
    const req = <R extends Record<string, unknown>>(type: string, payload: Record<string, unknown>) => client.request<R>(type, payload).catch(remoteError);
    const convId =
      values.conversation ??
      (await req<{ conversation: { conversation_id: string } }>('conversation.create', values.title ? { title: values.title } : {})).conversation.conversation_id;
    if (!values.json) io.err(`conversation ${convId} (resume with --conversation ${convId})`);
    const out = (line: string) => io.out(line);
    let partial = '';
    const live = process.stdout.isTTY === true;
    let turnDone: ((failed: boolean) => void) | null = null;
    let currentTurn: string | null = null;
    let failures = 0;
    const shownApprovals = new Set<string>();
    client.on('event', (e) => {
      const p = e.payload as EventPayload;
      if (values.json) {
        if (p.conversation_id === convId || e.type === 'approval.updated') out(JSON.stringify({ type: e.type, payload: p }));
      }
      if (e.type === 'approval.updated' && p.state === 'pending') {
        void showApproval(String(p.approval_id));
        return;
      }
      if (p.conversation_id !== convId) return;
      if (values.json) {
        if ((e.type === 'turn.completed' || e.type === 'turn.failed') && p.turn_id === currentTurn) turnDone?.(e.type === 'turn.failed');
        return;
      }
      switch (e.type) {
        case 'message.delta':
          // Streamed to a terminal as it comes; to a pipe or file, the whole answer at message.final.
          if (!live) break;
          partial += String(p.delta ?? '');
          process.stdout.write(clean(String(p.delta ?? '')));
          break;
        case 'message.final': {
          const calls = (p.tool_calls as Array<{ tool_id: string | null; arguments: string }> | undefined) ?? [];
          // Streamed text was printed as it came; text that was not streamed is printed now.
          if (partial === '' && typeof p.content === 'string' && p.content !== '') out(clean(p.content));
          else if (partial !== '') process.stdout.write('\n');
          partial = '';
          for (const c of calls) out(`  → ${clean(c.tool_id ?? '(unknown tool)')} ${clean(c.arguments)}`);
          break;
        }
        case 'message.created':
          if (p.role === 'tool') out(`  ← ${clean(String(p.content ?? '').slice(0, 400))}`);
          else if (p.role === 'notice') out(`  (${clean(String(p.content ?? ''))})`);
          break;
        case 'turn.completed':
        case 'turn.failed':
          if (p.turn_id === currentTurn) {
            if (e.type === 'turn.failed') out(`  turn failed: ${String(p.error_code)}`);
            turnDone?.(e.type === 'turn.failed');
          }
          break;
        default:
          break;
      }
    });
    const showApproval = async (id: string) => {
      if (shownApprovals.has(id)) return;
      shownApprovals.add(id);
      try {
        const r = await req<{ approvals: Array<{ id: string; tool_id: string; state: string; run_id: string; args: unknown }> }>('approval.list', { state: 'pending' });
        const a = r.approvals.find((x) => x.id === id);
        if (!a || values.json || currentTurn === null) return;
        // Only this chat's calls: a tool run of this turn is keyed <turn id>:<call id>.
        const run = await req<{ run: { idempotency_key: string | null } }>('run.get', { run_id: a.run_id });
        if (!run.run.idempotency_key?.startsWith(`${currentTurn}:`)) return;
        out(`  ⏸ ${clean(a.tool_id)} waits for approval ${a.id}: tyrum approvals approve ${a.id}   (or deny)`);
      } catch {
        // The token may lack operator.read; the turn still waits and resumes when resolved.
      }
    };
    const send = async (text: string): Promise<void> => {
      const ended = new Promise<boolean>((resolve) => (turnDone = resolve));
      const r = await req<{ turn_id: string }>('conversation.send', { conversation_id: convId, text });
      currentTurn = r.turn_id;
      if (await ended) failures++;
      turnDone = null;
    };
    if (values.message !== undefined) {
      await send(values.message);
      return failures > 0 ? 1 : 0;
    }
    const rl = createInterface({ input, terminal: false });
    for await (const line of rl) {
      const text = line.trim();
      if (text === '') continue;
      if (text === '/quit' || text === '/exit') break;
      await send(text);
    }
    return failures > 0 ? 1 : 0;
  });
}
