import { useState } from 'preact/hooks';
import type { OpMcpDiffResult, OpMcpListResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, JsonView, Loading, Time, stateTone } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

type Server = OpMcpListResult['servers'][number];

export function McpPage({ session }: { session: OperatorSession }) {
  const { data, error, reload } = useLive(session, () => session.request<OpMcpListResult>('mcp.list'), ['plugin.'], []);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="MCP servers" />;
  return (
    <div>
      <h1>MCP servers</h1>
      <p class="muted">A server's tools are served only once you approve them, each pinned to its definition. A tool whose definition changes is withdrawn until you review the diff and approve it again. The server's hints are its own claims: policy never trusts them.</p>
      <ErrorBox error={error} />
      {data.servers.length === 0 && <p class="muted">No MCP server is declared (`tyrum mcp add`, or a plugin that contributes one).</p>}
      <ul class="cards">
        {data.servers.map((s) => (
          <li key={s.name}>
            <ServerCard session={session} server={s} onDone={reload} />
          </li>
        ))}
      </ul>
    </div>
  );
}

function ServerCard({ session, server: s, onDone }: { session: OperatorSession; server: Server; onDone: () => void }) {
  const [all, setAll] = useState(false);
  const [readOnly, setReadOnly] = useState<string[]>([]);
  const diff = useLive(session, () => session.request<OpMcpDiffResult>('mcp.diff', { name: s.name, all }), [], [s.name, all, s.tools.pending, s.tools.changed, s.tools.approved]);
  const review = s.tools.pending + s.tools.changed;
  const admin = session.can('operator.admin');
  const approve = async (tools?: string[]) => {
    await session.request('mcp.approve', { name: s.name, ...(tools ? { tools } : {}), read_only: readOnly });
    onDone();
    diff.reload();
  };
  return (
    <article class="card" data-testid={`mcp-${s.name}`} aria-label={`MCP server ${s.name}`}>
      <header>
        <strong>{s.name}</strong> <Badge tone={s.state === 'approved' ? 'good' : s.state === 'quarantined' ? 'warn' : 'bad'}>{s.state}</Badge> <span class="muted">{s.origin} · {s.transport}</span>
        {review > 0 && <Badge tone="warn">{review} to review</Badge>}
      </header>
      {s.description && <p>{s.description}</p>}
      <dl class="kv">
        <dt>Tools</dt>
        <dd>
          {s.tools.approved} approved, {s.tools.pending} new, {s.tools.changed} changed, {s.tools.refused} refused, {s.tools.removed} removed
        </dd>
        <dt>Approved</dt>
        <dd>
          <Time iso={s.approved_at} /> {s.approved_by ?? ''}
        </dd>
        <dt>Health</dt>
        <dd>{s.health ? <JsonView value={s.health} /> : '—'}</dd>
      </dl>
      <details>
        <summary>Spec</summary>
        <JsonView value={s.spec} />
      </details>
      <label class="inline">
        <input type="checkbox" checked={all} onChange={(e) => setAll((e.target as HTMLInputElement).checked)} /> show every tool
      </label>
      <ErrorBox error={diff.error} />
      {diff.data?.tools.length === 0 && <p class="muted">Nothing to review.</p>}
      {diff.data?.tools.map((t) => (
        <section key={t.tool_id} class="card" aria-label={`tool ${t.tool_id}`}>
          <h3>
            <code>{t.tool_id}</code> <Badge tone={stateTone(t.status === 'changed' || t.status === 'pending' ? 'pending' : t.status)}>{t.status}</Badge>
          </h3>
          {t.refused && <p class="error">refused: {t.refused}</p>}
          {t.fields.length > 0 && (
            <table class="table">
              <thead>
                <tr>
                  <th>Field</th>
                  <th>Approved</th>
                  <th>Now</th>
                </tr>
              </thead>
              <tbody>
                {t.fields.map((f) => (
                  <tr key={f.field}>
                    <td>
                      <code>{f.field}</code>
                    </td>
                    <td>
                      <JsonView value={f.approved} />
                    </td>
                    <td>
                      <JsonView value={f.observed} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {t.status === 'pending' && t.observed && (
            <details>
              <summary>Definition</summary>
              <JsonView value={t.observed} />
            </details>
          )}
          {admin && (t.status === 'pending' || t.status === 'changed') && (
            <div class="row wrap">
              <label class="inline">
                <input type="checkbox" checked={readOnly.includes(t.name)} onChange={(e) => setReadOnly((cur) => ((e.target as HTMLInputElement).checked ? [...cur, t.name] : cur.filter((x) => x !== t.name)))} /> read-only
              </label>
              <Action label="Approve this tool" kind="primary" testid={`mcp-approve-${t.name}`} run={() => approve([t.name])} />
            </div>
          )}
        </section>
      ))}
      {admin && review > 1 && <Action label={`Approve all ${review}`} run={() => approve()} />}
    </article>
  );
}
