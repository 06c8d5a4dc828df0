import { useState } from 'preact/hooks';
import type { OpAuditListResult, OpAuditVerifyResult, OpDoctorRunResult, OpPluginListResult, OpPolicyGetResult } from '../../../sdk/types/contracts.js';
import { Badge, ErrorBox, Hash, JsonView, Loading, Time } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

const PAGE = 50;

export function AuditPage({ session }: { session: OperatorSession }) {
  const [type, setType] = useState('');
  const verify = useLive(session, () => session.request<OpAuditVerifyResult>('audit.verify', {}, 60_000), [], []);
  const entries = useLive(
    session,
    async () => {
      const v = verify.data;
      const total = v?.entries ?? 0;
      const r = await session.request<OpAuditListResult>('audit.list', { after_seq: type === '' ? Math.max(0, total - PAGE) : 0, limit: type === '' ? PAGE : 1000, ...(type !== '' ? { type } : {}) });
      return r.entries.slice(-PAGE).reverse();
    },
    ['run.', 'approval.', 'plugin.', 'pairing.'],
    [verify.data?.entries, type],
  );
  return (
    <div>
      <h1>Audit</h1>
      <section class="card" aria-label="verification" data-testid="audit-verify">
        <h2>Verification</h2>
        <ErrorBox error={verify.error} />
        {!verify.data ? (
          <Loading what="verification" />
        ) : (
          <dl class="kv">
            <dt>Chain</dt>
            <dd>
              <Badge tone={verify.data.ok ? 'good' : 'bad'}>{verify.data.ok ? 'verified' : 'BROKEN'}</Badge> {verify.data.reason}
            </dd>
            <dt>Entries</dt>
            <dd>{verify.data.entries}</dd>
            <dt>Head hash</dt>
            <dd>
              <Hash value={verify.data.head_hash} />
            </dd>
            <dt>Last signed checkpoint</dt>
            <dd>{verify.data.checkpoint_seq === null ? 'none yet' : `at entry ${verify.data.checkpoint_seq}`}</dd>
            {verify.data.first_bad_seq !== null && (
              <>
                <dt>First bad entry</dt>
                <dd class="error">{verify.data.first_bad_seq}</dd>
              </>
            )}
          </dl>
        )}
        <button type="button" class="btn" onClick={verify.reload}>
          Verify again
        </button>
      </section>
      <h2>Recent entries</h2>
      <label>
        Type <input type="search" value={type} placeholder="e.g. approval.resolved" onChange={(e) => setType((e.target as HTMLInputElement).value.trim())} />
      </label>
      <ErrorBox error={entries.error} />
      <table class="table">
        <thead>
          <tr>
            <th>Seq</th>
            <th>Time</th>
            <th>Type</th>
            <th>Actor</th>
            <th>Data</th>
          </tr>
        </thead>
        <tbody>
          {(entries.data ?? []).map((e) => (
            <tr key={e.seq}>
              <td>{e.seq}</td>
              <td>
                <Time iso={e.ts} />
              </td>
              <td>
                <code>{e.type}</code>
              </td>
              <td>
                <JsonView value={e.actor} />
              </td>
              <td>
                <JsonView value={e.data} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

interface Check {
  name: string;
  /** ok / warn / fail as tyrum doctor reports them; info for counts with no verdict. */
  status: 'ok' | 'warn' | 'fail' | 'info';
  detail: string;
  /** Where the check ran: in the gateway (doctor.run) or from this page over the protocol. */
  source: 'gateway' | 'page';
}

const verdict = (ok: boolean): Check['status'] => (ok ? 'ok' : 'fail');

/**
 * What `tyrum doctor` checks. With operator.admin the gateway runs the doctor's checks on its own
 * home (`doctor.run`: home permissions, config, database pragmas and quick_check, the key file,
 * the audit chain and checkpoint, plugins waiting for review); the page adds what only a client
 * sees (the gateway answers `/healthz`, clock skew), the policy mode and what waits for a human.
 * Without operator.admin the page verifies the audit chain and lists plugins itself.
 */
export function HealthPage({ session }: { session: OperatorSession }) {
  const admin = session.can('operator.admin');
  const { data, error, reload } = useLive(
    session,
    async (): Promise<{ checks: Check[]; at: string; gatewayAt: string | null }> => {
      let gatewayAt: string | null = null;
      const checks: Check[] = [];
      const add = async (name: string, fn: () => Promise<{ status: Check['status']; detail: string }>) => {
        try {
          checks.push({ name, source: 'page', ...(await fn()) });
        } catch (e) {
          checks.push({ name, source: 'page', status: 'fail', detail: e instanceof Error ? e.message : String(e) });
        }
      };
      await add('gateway', async () => {
        const r = await fetch('/healthz', { cache: 'no-store' });
        const h = (await r.json()) as { status?: string; version?: string; key_id?: string };
        return { status: verdict(r.ok && h.status === 'ok'), detail: `status ${String(h.status)}, version ${String(h.version)}, key ${String(h.key_id)}` };
      });
      await add('clock', async () => {
        const t0 = Date.now();
        const r = await session.request<{ server_time: string }>('ping');
        const rtt = Date.now() - t0;
        const skew = Math.round(new Date(r.server_time).getTime() - (t0 + rtt / 2));
        return { status: verdict(Math.abs(skew) < 30_000), detail: `round trip ${rtt} ms, this browser's clock differs by ${skew} ms` };
      });
      if (admin) {
        try {
          const d = await session.request<OpDoctorRunResult>('doctor.run', {}, 120_000);
          for (const c of d.checks) checks.push({ ...c, source: 'gateway' });
          gatewayAt = d.checked_at;
        } catch (e) {
          checks.push({ name: 'doctor.run', source: 'page', status: 'fail', detail: e instanceof Error ? e.message : String(e) });
        }
      } else {
        await add('audit chain', async () => {
          const v = await session.request<OpAuditVerifyResult>('audit.verify', {}, 60_000);
          return { status: verdict(v.ok), detail: v.ok ? `${v.entries} entries verified; checkpoint at ${v.checkpoint_seq ?? 'none yet'}` : `broken at ${v.first_bad_seq ?? '?'}: ${v.reason ?? ''}` };
        });
        await add('plugins', async () => {
          const r = await session.request<OpPluginListResult>('plugin.list');
          const blocked = r.plugins.filter((p) => p.state === 'disabled' && p.blockers.length > 0);
          return { status: 'info', detail: `${r.plugins.length} installed, ${r.plugins.filter((p) => p.state === 'enabled').length} enabled${blocked.length > 0 ? `; blocked: ${blocked.map((p) => p.id).join(', ')}` : ''}` };
        });
        checks.push({ name: 'home, database, key', source: 'page', status: 'info', detail: 'checked by the gateway with operator.admin (doctor.run), or by tyrum doctor on its machine' });
      }
      await add('policy', async () => {
        const p = await session.request<OpPolicyGetResult>('policy.get');
        // A tenant other than the default without a bundle of its own: the host's decides its calls.
        if (p.bundle === null || p.snapshot_id === null) return { status: 'info', detail: `no bundle of this tenant's own; the host's policy ${(p.host_snapshot_id ?? '').slice(0, 16)}… applies` };
        const mode = String((p.bundle as { mode?: unknown }).mode ?? 'enforce');
        return { status: mode === 'enforce' ? 'ok' : 'warn', detail: `mode ${mode}, snapshot ${p.snapshot_id.slice(0, 16)}…${mode !== 'enforce' ? ' (decisions are recorded, not enforced)' : ''}` };
      });
      await add('waiting for a human', async () => {
        const a = await session.request<{ approvals: unknown[] }>('approval.list', { state: 'pending', limit: 500 });
        let pairings = 'pairings: needs operator.pairing';
        if (session.can('operator.pairing')) pairings = `${(await session.request<{ pairings: unknown[] }>('pairing.list', { state: 'awaiting_human', limit: 500 })).pairings.length} pairing(s)`;
        return { status: 'info', detail: `${a.approvals.length} approval(s), ${pairings}` };
      });
      return { checks, at: new Date().toISOString(), gatewayAt };
    },
    // Not on events: a fresh doctor.run reads the gateway's whole database (on a worker thread,
    // about 1.2 s at 100,000 audit entries), so the page checks when it opens and when asked to
    // check again.
    [],
    [admin],
  );
  return (
    <div>
      <h1>Health</h1>
      <p class="muted">
        The checks of `tyrum doctor`, run when the page opens and on "Check again". {admin ? 'Those marked "gateway" ran in the gateway on its own home (doctor.run; SQLite quick_check; the gateway reuses a report for a minute, as each check reads its whole database); the others ran from this page.' : 'Home permissions, database pragmas and integrity need operator.admin (the gateway runs them with doctor.run) or tyrum doctor on the gateway machine.'}
      </p>
      <ErrorBox error={error} />
      {!data ? (
        <Loading what="checks" />
      ) : (
        <table class="table" data-testid="health">
          <thead>
            <tr>
              <th>Check</th>
              <th>Result</th>
              <th>Detail</th>
              <th>Ran in</th>
            </tr>
          </thead>
          <tbody>
            {data.checks.map((c) => (
              <tr key={c.name} data-testid={`check-${c.name.replace(/[^a-z0-9]+/g, '-')}`}>
                <td>{c.name}</td>
                <td>
                  <Badge tone={c.status === 'info' ? 'neutral' : c.status === 'ok' ? 'good' : c.status === 'warn' ? 'warn' : 'bad'}>{c.status === 'fail' ? 'problem' : c.status}</Badge>
                </td>
                <td>{c.detail}</td>
                <td class="muted">{c.source === 'gateway' ? 'gateway' : 'page'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <button type="button" class="btn" data-testid="check-again" onClick={reload}>
        Check again
      </button>
      <details>
        <summary>Session</summary>
        <JsonView value={session.status} />
      </details>
      {data && (
        <p class="muted" data-testid="health-checked" data-at={data.at}>
          Checked <Time iso={data.at} />
          {data.gatewayAt !== null && (
            <>
              {' '}
              (the gateway's report is from <Time iso={data.gatewayAt} />)
            </>
          )}
        </p>
      )}
    </div>
  );
}
