import { useState } from 'preact/hooks';
import type { OpRunGetResult, OpRunListResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, Hash, JsonView, Loading, Time, stateTone } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

const STATES = ['', 'queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;

export function RunsPage({ session, runId }: { session: OperatorSession; runId: string | null }) {
  const [state, setState] = useState<string>('');
  const [filter, setFilter] = useState('');
  const { data, error } = useLive(session, () => session.request<OpRunListResult>('run.list', { limit: 200, ...(state !== '' ? { state } : {}) }), ['run.', 'step.'], [state]);
  const runs = (data?.runs ?? []).filter((r) => filter === '' || r.id.includes(filter) || r.created_by.includes(filter));
  return (
    <div class={runId ? 'split' : ''}>
      <div>
        <h1>Runs</h1>
        <div class="row wrap">
          <label>
            State{' '}
            <select value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s === '' ? 'any' : s}
                </option>
              ))}
            </select>
          </label>
          <label>
            Filter <input type="search" value={filter} placeholder="run id or creator" onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
          </label>
        </div>
        <ErrorBox error={error} />
        {!data ? (
          <Loading what="runs" />
        ) : (
          <table class="table">
            <thead>
              <tr>
                <th>Run</th>
                <th>Kind</th>
                <th>State</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {runs.map((r) => (
                <tr key={r.id} class={r.id === runId ? 'selected' : ''}>
                  <td>
                    <a href={`#/runs/${encodeURIComponent(r.id)}`}>{r.id}</a>
                  </td>
                  <td>{r.kind}</td>
                  <td>
                    <Badge tone={stateTone(r.state)}>{r.state}</Badge>
                    {r.pause_reason && <span class="muted"> ({r.pause_reason})</span>}
                  </td>
                  <td>
                    <Time iso={r.created_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {runId && <RunDetail session={session} runId={runId} />}
    </div>
  );
}

function RunDetail({ session, runId }: { session: OperatorSession; runId: string }) {
  const { data, error, reload } = useLive(session, () => session.request<OpRunGetResult>('run.get', { run_id: runId }), ['run.', 'step.', 'approval.'], [runId]);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="run" />;
  const { run, steps } = data;
  const finished = ['succeeded', 'failed', 'cancelled'].includes(run.state);
  return (
    <section class="card" aria-label={`run ${run.id}`} data-testid="run-detail">
      <h2>
        Run <code>{run.id}</code> <Badge tone={stateTone(run.state)}>{run.state}</Badge>
      </h2>
      <ErrorBox error={error} />
      <dl class="kv">
        <dt>Kind</dt>
        <dd>{run.kind}</dd>
        <dt>Created by</dt>
        <dd>{run.created_by}</dd>
        <dt>Created</dt>
        <dd>
          <Time iso={run.created_at} />
        </dd>
        <dt>Finished</dt>
        <dd>
          <Time iso={run.finished_at} />
        </dd>
        <dt>Paused for</dt>
        <dd>{run.pause_reason ?? '—'}</dd>
        <dt>Cancel requested</dt>
        <dd>{run.cancel_requested ? 'yes' : 'no'}</dd>
      </dl>
      {run.error && (
        <p class="error">
          <code>{run.error.code}</code> {run.error.message}
        </p>
      )}
      {!finished && session.can('operator.write') && <Action label="Cancel run" kind="danger" run={() => session.request('run.cancel', { run_id: run.id }).then(reload)} />}
      {steps.map((s) => (
        <article key={s.idx} class="card step">
          <h3>
            Step {s.idx}: <code>{s.tool_id}</code> <Badge tone={stateTone(s.state)}>{s.state}</Badge>
          </h3>
          {s.state === 'outcome_unknown' && (
            <div class="callout">
              <p>The gateway cannot tell whether this step had its effect (it was cut off while running). Decide:</p>
              {session.can('operator.approvals') ? (
                <div class="row wrap">
                  <Action label="Retry it" run={() => session.request('run.resolve', { run_id: run.id, step_idx: s.idx, action: 'retry' }).then(reload)} />
                  <Action label="Skip it (it happened)" run={() => session.request('run.resolve', { run_id: run.id, step_idx: s.idx, action: 'skip' }).then(reload)} />
                  <Action label="Fail the run" kind="danger" run={() => session.request('run.resolve', { run_id: run.id, step_idx: s.idx, action: 'fail' }).then(reload)} />
                </div>
              ) : (
                <p class="muted">Needs operator.approvals.</p>
              )}
            </div>
          )}
          <dl class="kv">
            <dt>Decision</dt>
            <dd>
              {s.policy ? (
                <span>
                  <Badge tone={s.policy.decision === 'deny' ? 'bad' : s.policy.decision === 'allow' ? 'good' : 'warn'}>{s.policy.decision}</Badge> {s.policy.enforced ? 'enforced' : 'monitor'} · snapshot <Hash value={s.policy.snapshot_id} />
                </span>
              ) : (
                '—'
              )}
            </dd>
            <dt>Approval</dt>
            <dd>{s.approval_id ? <code>{s.approval_id}</code> : '—'}</dd>
            <dt>Definition hash</dt>
            <dd>
              <Hash value={s.definition_hash} />
            </dd>
            <dt>Duration</dt>
            <dd>{s.duration_ms !== null ? `${Math.round(s.duration_ms)} ms` : '—'}</dd>
          </dl>
          <details>
            <summary>Arguments</summary>
            <div class="json">
              <JsonView value={s.args} />
            </div>
          </details>
          {s.policy && (
            <details>
              <summary>Policy detail (matched rules)</summary>
              <div class="json">
                <JsonView value={s.policy.detail} />
              </div>
            </details>
          )}
          {s.result !== null && s.result !== undefined && (
            <details open>
              <summary>Result</summary>
              <div class="json" data-testid={`step-${s.idx}-result`}>
                <JsonView value={s.result} />
              </div>
            </details>
          )}
          {s.error && (
            <p class="error">
              <code>{s.error.code}</code> {s.error.message}
            </p>
          )}
          {s.attempts.length > 0 && (
            <table class="table">
              <thead>
                <tr>
                  <th>Attempt</th>
                  <th>State</th>
                  <th>Started</th>
                  <th>Duration</th>
                  <th>Evidence / error</th>
                </tr>
              </thead>
              <tbody>
                {s.attempts.map((at) => (
                  <tr key={at.n}>
                    <td>{at.n}</td>
                    <td>
                      <Badge tone={stateTone(at.state)}>{at.state}</Badge>
                    </td>
                    <td>
                      <Time iso={at.started_at} />
                    </td>
                    <td>{at.duration_ms !== null ? `${Math.round(at.duration_ms)} ms` : '—'}</td>
                    <td>
                      {at.error && (
                        <p class="error">
                          <code>{at.error.code}</code> {at.error.message}
                        </p>
                      )}
                      <JsonView value={at.evidence} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </article>
      ))}
    </section>
  );
}
