import { useState } from 'preact/hooks';
import type { OpApprovalListResult, OpRunGetResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, Hash, JsonView, Loading, Time, stateTone } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

type Approval = OpApprovalListResult['approvals'][number];

const EXPIRIES: Array<[string, number | null]> = [
  ['never', null],
  ['1 hour', 3600],
  ['1 day', 86_400],
  ['7 days', 7 * 86_400],
  ['30 days', 30 * 86_400],
];

export function ApprovalsPage({ session }: { session: OperatorSession }) {
  const [showAll, setShowAll] = useState(false);
  const { data, error, reload } = useLive(session, () => session.request<OpApprovalListResult>('approval.list', { limit: 200 }), ['approval.'], []);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="approvals" />;
  const pending = data.approvals.filter((a) => a.state === 'pending');
  const others = data.approvals.filter((a) => a.state !== 'pending');
  return (
    <div>
      <h1>Approvals</h1>
      <ErrorBox error={error} />
      <p class="muted">Calls that policy paused for a human. Approve once, approve always (a narrow override for this tool, never beating a deny), or deny.</p>
      <h2>
        Pending <Badge tone={pending.length > 0 ? 'warn' : 'neutral'}>{pending.length}</Badge>
      </h2>
      {pending.length === 0 && <p class="muted">Nothing waits for you.</p>}
      <ul class="cards" aria-label="pending approvals">
        {pending.map((a) => (
          <li key={a.id}>
            <ApprovalCard session={session} approval={a} onDone={reload} />
          </li>
        ))}
      </ul>
      <h2>Resolved</h2>
      <label class="inline">
        <input type="checkbox" checked={showAll} onChange={(e) => setShowAll((e.target as HTMLInputElement).checked)} /> show all {others.length}
      </label>
      <table class="table">
        <thead>
          <tr>
            <th>Approval</th>
            <th>Tool</th>
            <th>State</th>
            <th>Mode</th>
            <th>Resolved</th>
          </tr>
        </thead>
        <tbody>
          {(showAll ? others : others.slice(0, 15)).map((a) => (
            <tr key={a.id}>
              <td>
                <code>{a.id}</code>
              </td>
              <td>
                <code>{a.tool_id}</code>
              </td>
              <td>
                <Badge tone={stateTone(a.state)}>{a.state}</Badge>
              </td>
              <td>{a.mode ?? '—'}</td>
              <td>
                <Time iso={a.resolved_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ApprovalCard({ session, approval: a, onDone }: { session: OperatorSession; approval: Approval; onDone: () => void }) {
  const [reason, setReason] = useState('');
  const [expiry, setExpiry] = useState('0');
  const rules = useLive(
    session,
    async () => {
      if (!a.run_id) return null;
      const run = await session.request<OpRunGetResult>('run.get', { run_id: a.run_id });
      return run.steps.find((s) => s.idx === a.step_idx)?.policy ?? null;
    },
    [],
    [a.id],
  );
  const canResolve = session.can('operator.approvals');
  const resolve = async (decision: 'approved' | 'denied', mode: 'once' | 'always') => {
    const ttl = EXPIRIES[Number(expiry)]?.[1] ?? null;
    await session.request('approval.resolve', {
      approval_id: a.id,
      decision,
      ...(reason.trim() !== '' ? { reason: reason.trim() } : {}),
      ...(decision === 'approved' ? { mode } : {}),
      ...(mode === 'always' && ttl !== null ? { override_ttl_seconds: ttl } : {}),
    });
    onDone();
  };
  return (
    <article class="card approval" data-testid={`approval-${a.id}`} aria-label={`approval ${a.id} for ${a.tool_id}`}>
      <header>
        <strong>
          <code>{a.tool_id}</code>
        </strong>{' '}
        <Badge tone="warn">pending</Badge>
      </header>
      <dl class="kv">
        <dt>Approval</dt>
        <dd>
          <code>{a.id}</code>
        </dd>
        <dt>Run</dt>
        <dd>{a.run_id ? <a href={`#/runs/${encodeURIComponent(a.run_id)}`}>{a.run_id}</a> : '—'}</dd>
        <dt>Definition hash</dt>
        <dd>
          <Hash value={a.definition_hash} />
        </dd>
        <dt>Requested by</dt>
        <dd>{a.requested_by}</dd>
        <dt>Requested</dt>
        <dd>
          <Time iso={a.created_at} />
        </dd>
        <dt>Expires</dt>
        <dd>
          <Time iso={a.expires_at} />
        </dd>
      </dl>
      <h3>Arguments</h3>
      <div class="json">
        <JsonView value={a.args} />
      </div>
      <h3>Policy</h3>
      {rules.data === undefined ? (
        <Loading what="policy decision" />
      ) : rules.data === null ? (
        <p class="muted">No policy decision recorded.</p>
      ) : (
        <div>
          <p>
            Decision <Badge tone={rules.data.decision === 'deny' ? 'bad' : 'warn'}>{rules.data.decision}</Badge> {rules.data.enforced ? 'enforced' : 'not enforced (monitor mode)'} · snapshot <Hash value={rules.data.snapshot_id} />
          </p>
          <div class="json">
            <JsonView value={rules.data.detail} />
          </div>
        </div>
      )}
      {canResolve ? (
        <div class="row wrap">
          <label>
            Reason <input type="text" value={reason} maxLength={1000} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
          </label>
          <Action label="Approve" kind="primary" testid="approve" run={() => resolve('approved', 'once')} />
          <label>
            Always, expiring{' '}
            <select value={expiry} onChange={(e) => setExpiry((e.target as HTMLSelectElement).value)}>
              {EXPIRIES.map(([label], i) => (
                <option key={label} value={String(i)}>
                  {label}
                </option>
              ))}
            </select>
          </label>
          <Action label="Approve always" testid="approve-always" run={() => resolve('approved', 'always')} />
          <Action label="Deny" kind="danger" testid="deny" run={() => resolve('denied', 'once')} />
        </div>
      ) : (
        <p class="muted">Your token lacks operator.approvals: you can see this approval but not resolve it.</p>
      )}
    </article>
  );
}
