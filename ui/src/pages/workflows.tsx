import { useState } from 'preact/hooks';
import type { OpWorkflowGetResult, OpWorkflowListResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, Hash, JsonView, Loading, Time, stateTone } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

const STATES = ['', 'running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;

/**
 * Workflows (playbook runs, docs/playbooks.md): the list, one workflow's steps and their state,
 * and a gate waiting for a human, decided here with the resume token that workflow.get shows
 * only to a caller with operator.approvals. Live on workflow.updated.
 */
export function WorkflowsPage({ session, workflowId }: { session: OperatorSession; workflowId: string | null }) {
  const [state, setState] = useState<string>('');
  const { data, error } = useLive(session, () => session.request<OpWorkflowListResult>('workflow.list', { limit: 200, ...(state !== '' ? { state } : {}) }), ['workflow.'], [state]);
  return (
    <div class={workflowId ? 'split' : ''}>
      <div>
        <h1>Workflows</h1>
        <p class="muted">Playbook runs (`tyrum playbook run`, schedules with --playbook, workflow.start). A workflow paused at an approval gate waits for you here.</p>
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
        <ErrorBox error={error} />
        {!data ? (
          <Loading what="workflows" />
        ) : data.workflows.length === 0 ? (
          <p class="muted">No workflow{state !== '' ? ` is ${state}` : ' yet'}.</p>
        ) : (
          <table class="table">
            <thead>
              <tr>
                <th>Workflow</th>
                <th>Playbook</th>
                <th>State</th>
                <th>Step</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {data.workflows.map((w) => (
                <tr key={w.workflow_id} class={w.workflow_id === workflowId ? 'selected' : ''} data-testid={`workflow-${w.workflow_id}`}>
                  <td>
                    <a href={`#/workflows/${encodeURIComponent(w.workflow_id)}`}>{w.workflow_id}</a>
                  </td>
                  <td>
                    {w.name} <span class="muted">{w.version}</span>
                  </td>
                  <td>
                    <Badge tone={stateTone(w.state)}>{w.state}</Badge>
                    {w.gate && <span class="muted"> (gate {w.gate.step_id})</span>}
                  </td>
                  <td>
                    {Math.min(w.step_idx + 1, w.steps.length)} / {w.steps.length}
                  </td>
                  <td>
                    <Time iso={w.created_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {workflowId && <WorkflowDetail session={session} workflowId={workflowId} />}
    </div>
  );
}

function WorkflowDetail({ session, workflowId }: { session: OperatorSession; workflowId: string }) {
  const [reason, setReason] = useState('');
  const { data, error, reload } = useLive(session, () => session.request<OpWorkflowGetResult>('workflow.get', { workflow_id: workflowId }), ['workflow.'], [workflowId]);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="workflow" />;
  const w = data.workflow;
  const decide = (decision: 'approve' | 'deny') =>
    session.request('workflow.resume', { token: w.resume_token ?? '', decision, ...(reason.trim() !== '' ? { reason: reason.trim() } : {}) }).then(() => {
      setReason('');
      reload();
    });
  return (
    <section class="card" aria-label={`workflow ${w.workflow_id}`} data-testid="workflow-detail">
      <h2>
        {w.name} <span class="muted">{w.version}</span> <Badge tone={stateTone(w.state)}>{w.state}</Badge>
      </h2>
      <ErrorBox error={error} />
      <dl class="kv">
        <dt>Workflow</dt>
        <dd>
          <code>{w.workflow_id}</code>
        </dd>
        <dt>Plan</dt>
        <dd>
          <Hash value={w.plan_hash} />
        </dd>
        <dt>Created</dt>
        <dd>
          <Time iso={w.created_at} /> by <code>{w.created_by}</code>
        </dd>
        <dt>Finished</dt>
        <dd>
          <Time iso={w.finished_at} />
        </dd>
        <dt>Inputs</dt>
        <dd>
          <JsonView value={w.inputs} />
        </dd>
      </dl>
      {w.error && (
        <p class="error">
          <code>{w.error.code}</code> {w.error.message}
        </p>
      )}
      {w.gate && w.state === 'paused' && (
        <div class="callout" data-testid="workflow-gate">
          <strong>Waiting for you at {w.gate.step_id}:</strong> {w.gate.message}
          <p class="muted">
            Expires <Time iso={w.gate.expires_at} />.
          </p>
          {w.resume_token ? (
            <div class="row wrap">
              <label>
                Reason <input type="text" maxLength={1000} value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
              </label>
              <Action label="Approve" kind="primary" testid="gate-approve" run={() => decide('approve')} />
              <Action label="Deny" kind="danger" testid="gate-deny" run={() => decide('deny')} />
            </div>
          ) : (
            <p class="muted">Deciding a gate needs operator.approvals.</p>
          )}
        </div>
      )}
      <h3>Steps</h3>
      <table class="table" data-testid="workflow-steps">
        <thead>
          <tr>
            <th>#</th>
            <th>Step</th>
            <th>Kind</th>
            <th>State</th>
            <th>Run / turn</th>
            <th>Output</th>
          </tr>
        </thead>
        <tbody>
          {w.steps.map((s) => (
            <tr key={s.idx} data-testid={`wf-step-${s.id}`}>
              <td>{s.idx + 1}</td>
              <td>
                <code>{s.id}</code>
                {s.tool_id && (
                  <>
                    {' '}
                    <code class="muted">{s.tool_id}</code>
                  </>
                )}
              </td>
              <td>{s.kind}</td>
              <td>
                <Badge tone={stateTone(s.state)}>{s.state}</Badge>
              </td>
              <td>
                {s.run_id ? <a href={`#/runs/${encodeURIComponent(s.run_id)}`}>{s.run_id}</a> : s.conversation_id ? <a href={`#/conversations/${encodeURIComponent(s.conversation_id)}`}>{s.turn_id ?? s.conversation_id}</a> : '—'}
              </td>
              <td>{s.output === null || s.output === undefined ? <span class="muted">—</span> : <JsonView value={s.output} />}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {session.can('operator.write') && (w.state === 'running' || w.state === 'paused') && <Action label="Cancel workflow" kind="danger" testid="workflow-cancel" run={() => session.request('workflow.cancel', { workflow_id: w.workflow_id }).then(reload)} />}
    </section>
  );
}
