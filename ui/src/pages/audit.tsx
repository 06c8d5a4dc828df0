import { useState } from 'preact/hooks';
import type { OpAuditListResult, OpAuditVerifyResult, OpPluginListResult, OpPolicyGetResult } from '../../../sdk/types/contracts.js';
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
  ok: boolean | null;
  detail: string;
}

/**
 * What `tyrum doctor` checks that can be seen over the protocol: the gateway answers and names its
 * key, the clock, the audit chain and checkpoint, the policy mode, plugins that cannot be enabled,
 * and what waits for a human. Home permissions, database pragmas and integrity are checked on the
 * gateway's machine by `tyrum doctor` (they have no operation).
 */
export function HealthPage({ session }: { session: OperatorSession }) {
  const { data, error, reload } = useLive(
    session,
    async (): Promise<Check[]> => {
      const checks: Check[] = [];
      const add = async (name: string, fn: () => Promise<{ ok: boolean | null; detail: string }>) => {
        try {
          checks.push({ name, ...(await fn()) });
        } catch (e) {
          checks.push({ name, ok: false, detail: e instanceof Error ? e.message : String(e) });
        }
      };
      await add('gateway', async () => {
        const r = await fetch('/healthz', { cache: 'no-store' });
        const h = (await r.json()) as { status?: string; version?: string; key_id?: string };
        return { ok: r.ok && h.status === 'ok', detail: `status ${String(h.status)}, version ${String(h.version)}, key ${String(h.key_id)}` };
      });
      await add('clock', async () => {
        const t0 = Date.now();
        const r = await session.request<{ server_time: string }>('ping');
        const rtt = Date.now() - t0;
        const skew = Math.round(new Date(r.server_time).getTime() - (t0 + rtt / 2));
        return { ok: Math.abs(skew) < 30_000, detail: `round trip ${rtt} ms, this browser's clock differs by ${skew} ms` };
      });
      await add('audit chain', async () => {
        const v = await session.request<OpAuditVerifyResult>('audit.verify', {}, 60_000);
        return { ok: v.ok, detail: v.ok ? `${v.entries} entries verified; checkpoint at ${v.checkpoint_seq ?? 'none yet'}` : `broken at ${v.first_bad_seq ?? '?'}: ${v.reason ?? ''}` };
      });
      await add('policy', async () => {
        const p = await session.request<OpPolicyGetResult>('policy.get');
        const mode = String((p.bundle as { mode?: unknown }).mode ?? 'enforce');
        return { ok: mode === 'enforce', detail: `mode ${mode}, snapshot ${p.snapshot_id.slice(0, 16)}…${mode !== 'enforce' ? ' (decisions are recorded, not enforced)' : ''}` };
      });
      await add('plugins', async () => {
        const r = await session.request<OpPluginListResult>('plugin.list');
        const blocked = r.plugins.filter((p) => p.state === 'disabled' && p.blockers.length > 0);
        return { ok: null, detail: `${r.plugins.length} installed, ${r.plugins.filter((p) => p.state === 'enabled').length} enabled${blocked.length > 0 ? `; blocked: ${blocked.map((p) => p.id).join(', ')}` : ''}` };
      });
      await add('waiting for a human', async () => {
        const a = await session.request<{ approvals: unknown[] }>('approval.list', { state: 'pending', limit: 500 });
        let pairings = 'pairings: needs operator.pairing';
        if (session.can('operator.pairing')) pairings = `${(await session.request<{ pairings: unknown[] }>('pairing.list', { state: 'awaiting_human', limit: 500 })).pairings.length} pairing(s)`;
        return { ok: null, detail: `${a.approvals.length} approval(s), ${pairings}` };
      });
      return checks;
    },
    ['plugin.', 'approval.', 'pairing.'],
    [],
  );
  return (
    <div>
      <h1>Health</h1>
      <p class="muted">The checks of `tyrum doctor` that the protocol can see. Home permissions, database pragmas and integrity are checked by `tyrum doctor` on the gateway's machine.</p>
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
            </tr>
          </thead>
          <tbody>
            {data.map((c) => (
              <tr key={c.name}>
                <td>{c.name}</td>
                <td>
                  <Badge tone={c.ok === null ? 'neutral' : c.ok ? 'good' : 'bad'}>{c.ok === null ? 'info' : c.ok ? 'ok' : 'problem'}</Badge>
                </td>
                <td>{c.detail}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <button type="button" class="btn" onClick={reload}>
        Check again
      </button>
      <details>
        <summary>Session</summary>
        <JsonView value={session.status} />
      </details>
      <p class="muted">
        Checked <Time iso={new Date().toISOString()} />
      </p>
    </div>
  );
}
