import { useEffect, useState } from 'preact/hooks';
import type { OpApprovalListResult, OpConversationGetResult, OpConversationListResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, JsonView, Loading, Time, stateTone } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

export function ConversationsPage({ session, conversationId }: { session: OperatorSession; conversationId: string | null }) {
  const { data, error, reload } = useLive(session, () => session.request<OpConversationListResult>('conversation.list', { limit: 100 }), ['message.', 'turn.'], []);
  return (
    <div class="split">
      <div>
        <h1>Conversations</h1>
        {session.can('operator.write') && (
          <Action
            label="New conversation"
            run={async () => {
              const r = await session.request<{ conversation: { conversation_id: string } }>('conversation.create', {});
              reload();
              location.hash = `#/conversations/${encodeURIComponent(r.conversation.conversation_id)}`;
            }}
          />
        )}
        <ErrorBox error={error} />
        {!data ? (
          <Loading what="conversations" />
        ) : (
          <ul class="list">
            {data.conversations.map((c) => (
              <li key={c.conversation_id} class={c.conversation_id === conversationId ? 'selected' : ''}>
                <a href={`#/conversations/${encodeURIComponent(c.conversation_id)}`}>{c.title ?? c.conversation_id}</a> <span class="muted">{c.channel}</span> <Time iso={c.updated_at} />
              </li>
            ))}
          </ul>
        )}
      </div>
      {conversationId && <Chat session={session} conversationId={conversationId} />}
    </div>
  );
}

function Chat({ session, conversationId }: { session: OperatorSession; conversationId: string }) {
  const conv = useLive(session, () => session.request<OpConversationGetResult>('conversation.get', { conversation_id: conversationId, limit: 200 }), ['message.created', 'message.final', 'turn.', 'approval.', 'delivery.'], [conversationId]);
  const approvals = useLive(session, () => session.request<OpApprovalListResult>('approval.list', { state: 'pending', limit: 200 }), ['approval.'], []);
  const [text, setText] = useState('');
  const [streaming, setStreaming] = useState('');
  const [typing, setTyping] = useState(false);
  useEffect(() => {
    setStreaming('');
    return session.onEvent((e) => {
      if (e.payload.conversation_id !== conversationId) return;
      if (e.type === 'message.delta' && typeof e.payload.delta === 'string') setStreaming((s) => s + String(e.payload.delta));
      if (e.type === 'message.final') setStreaming('');
      if (e.type === 'typing.started') setTyping(true);
      if (e.type === 'typing.stopped') setTyping(false);
    });
  }, [session, conversationId]);
  if (!conv.data) return conv.error ? <ErrorBox error={conv.error} /> : <Loading what="conversation" />;
  const pendingByRun = new Map((approvals.data?.approvals ?? []).filter((a) => a.run_id !== null).map((a) => [a.run_id!, a]));
  const lastTurn = conv.data.turns[conv.data.turns.length - 1];
  return (
    <section class="card chat" aria-label="conversation">
      <h2>{conv.data.conversation.title ?? conv.data.conversation.conversation_id}</h2>
      <ol class="messages" aria-live="polite">
        {conv.data.messages.map((m) => {
          const pending = m.run_id ? pendingByRun.get(m.run_id) : undefined;
          return (
            <li key={m.message_id} class={`msg msg-${m.role}`}>
              <div class="meta">
                {m.role} · <Time iso={m.created_at} />
              </div>
              {m.content && <p class="content">{m.content}</p>}
              {m.tool_calls?.map((tc) => (
                <details key={tc.id} class="toolcall">
                  <summary>
                    tool call <code>{tc.tool_id ?? '(unknown tool)'}</code>
                  </summary>
                  <pre>{tc.arguments}</pre>
                </details>
              ))}
              {m.run_id && (
                <p>
                  run <a href={`#/runs/${encodeURIComponent(m.run_id)}`}>{m.run_id}</a>{' '}
                  {pending && (
                    <span>
                      <Badge tone="warn">waiting for approval</Badge>{' '}
                      {session.can('operator.approvals') && (
                        <>
                          <Action label="Approve" kind="primary" run={() => session.request('approval.resolve', { approval_id: pending.id, decision: 'approved', mode: 'once' })} />
                          <Action label="Deny" kind="danger" run={() => session.request('approval.resolve', { approval_id: pending.id, decision: 'denied' })} />
                        </>
                      )}
                      <details>
                        <summary>arguments</summary>
                        <JsonView value={pending.args} />
                      </details>
                    </span>
                  )}
                </p>
              )}
            </li>
          );
        })}
        {streaming && (
          <li class="msg msg-assistant">
            <div class="meta">assistant (streaming)</div>
            <p class="content">{streaming}</p>
          </li>
        )}
      </ol>
      {typing && <p class="muted">The agent is answering…</p>}
      {lastTurn && (
        <p class="muted">
          Last turn <Badge tone={stateTone(lastTurn.state)}>{lastTurn.state}</Badge> {lastTurn.waiting ? `waiting: ${lastTurn.waiting}` : ''} {lastTurn.error ? lastTurn.error.message : ''}
        </p>
      )}
      {session.can('operator.write') && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            const t = text.trim();
            if (t === '') return;
            void session
              .request('conversation.send', { conversation_id: conversationId, text: t })
              .then(() => setText(''))
              .catch((err: unknown) => alert(err instanceof Error ? err.message : String(err)));
          }}
        >
          <label class="grow">
            <span class="sr-only">Message</span>
            <textarea rows={2} value={text} maxLength={32768} placeholder="Message the agent" onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
          </label>
          <button type="submit" class="btn btn-primary">
            Send
          </button>
        </form>
      )}
    </section>
  );
}
