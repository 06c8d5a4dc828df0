import { useState } from 'preact/hooks';
import type { OpPluginGetResult, OpPluginListResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, Hash, JsonView, Loading, Time, stateTone } from '../components.js';
import { useLive, type OperatorSession } from '../lib/session.js';

type Plugin = OpPluginListResult['plugins'][number];
type Risk = Plugin['risk'][number];

export function PluginsPage({ session }: { session: OperatorSession }) {
  const { data, error, reload } = useLive(session, () => session.request<OpPluginListResult>('plugin.list'), ['plugin.'], []);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="plugins" />;
  return (
    <div>
      <h1>Plugins</h1>
      <p class="muted">
        The two-key model: a plugin <em>requests</em> rights in its manifest, you <em>grant</em> some, and it gets the <em>effective</em> rights (request ∩ grant). Declared risks must be accepted before it can be enabled.
      </p>
      <ErrorBox error={error} />
      {data.plugins.length === 0 && <p class="muted">No plugin is installed (`tyrum plugin install PATH`).</p>}
      <ul class="cards">
        {data.plugins.map((p) => (
          <li key={p.id}>
            <PluginCard session={session} plugin={p} onDone={reload} />
          </li>
        ))}
      </ul>
    </div>
  );
}

function PluginCard({ session, plugin: p, onDone }: { session: OperatorSession; plugin: Plugin; onDone: () => void }) {
  const [accept, setAccept] = useState<Risk[]>(p.grant?.accept_risks ?? []);
  const detail = useLive(session, () => session.request<OpPluginGetResult>('plugin.get', { plugin_id: p.id }), [], [p.id, p.updated_at]);
  const admin = session.can('operator.admin');
  const requested = detail.data?.manifest.requests ?? null;
  return (
    <article class="card" data-testid={`plugin-${p.id}`} aria-label={`plugin ${p.id}`}>
      <header>
        <strong>{p.name}</strong> <code>{p.id}</code> {p.version} <Badge tone={stateTone(p.state)}>{p.state}</Badge>
      </header>
      <p>{p.description}</p>
      <dl class="kv">
        <dt>Publisher</dt>
        <dd>{p.publisher}</dd>
        <dt>Tools</dt>
        <dd>{p.tools.length > 0 ? p.tools.map((t) => <code key={t}>{t} </code>) : '—'}</dd>
        <dt>Digests</dt>
        <dd>
          manifest <Hash value={p.manifest_sha256} /> · wasm <Hash value={p.wasm_sha256} />
        </dd>
        <dt>Risk flags</dt>
        <dd>
          {p.risk.length === 0
            ? 'none'
            : p.risk.map((r) => (
                <Badge key={r} tone={p.effective.missing_risks.includes(r) ? 'bad' : 'good'}>
                  {r}
                  {p.effective.missing_risks.includes(r) ? ' (not accepted)' : ' (accepted)'}
                </Badge>
              ))}
        </dd>
        <dt>Updated</dt>
        <dd>
          <Time iso={p.updated_at} />
        </dd>
      </dl>
      {p.blockers.length > 0 && (
        <div class="callout" data-testid="blockers">
          <strong>What blocks enabling:</strong>
          <ul>
            {p.blockers.map((b) => (
              <li key={b}>{b}</li>
            ))}
          </ul>
        </div>
      )}
      {p.pending_upgrade && (
        <section class="callout upgrade" data-testid="upgrade-diff" aria-label={`upgrade ${p.pending_upgrade.from_version} to ${p.pending_upgrade.to_version}`}>
          <strong>
            Upgrade {p.pending_upgrade.from_version} → {p.pending_upgrade.to_version} asks for more than you granted
          </strong>{' '}
          (since <Time iso={p.pending_upgrade.since} />). It stays disabled until you review this and grant again; the current grant still applies to what the old version asked for.
          <table class="table">
            <thead>
              <tr>
                <th>Right</th>
                <th>Change</th>
                <th>What</th>
              </tr>
            </thead>
            <tbody>
              {p.pending_upgrade.diff.map((d) => (
                <tr key={`${d.kind}|${d.change}|${d.detail}`} class={`diff-${d.change}`}>
                  <td>{d.kind}</td>
                  <td>
                    <Badge tone="warn">{d.change}</Badge>
                  </td>
                  <td>
                    <code>{d.detail}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      <div class="three">
        <div>
          <h3>Requested</h3>
          {detail.data ? <JsonView value={requested ?? {}} /> : <Loading what="manifest" />}
        </div>
        <div>
          <h3>Granted</h3>
          {p.grant ? <JsonView value={p.grant} /> : <p class="muted">No grant.</p>}
        </div>
        <div>
          <h3>Effective</h3>
          <JsonView value={p.effective} />
        </div>
      </div>
      {admin ? (
        <div class="row wrap">
          {p.risk.length > 0 && (
            <fieldset>
              <legend>Accept risks</legend>
              {p.risk.map((r) => (
                <label key={r} class="inline">
                  <input type="checkbox" checked={accept.includes(r)} onChange={(e) => setAccept((cur) => ((e.target as HTMLInputElement).checked ? [...cur, r] : cur.filter((x) => x !== r)))} /> {r}
                </label>
              ))}
            </fieldset>
          )}
          <Action label={p.pending_upgrade ? `Grant all requested by ${p.pending_upgrade.to_version}` : 'Grant all requested'} testid="grant" run={() => session.request('plugin.grant', { plugin_id: p.id, all_requested: true, ...(accept.length > 0 ? { accept_risks: accept } : {}) }).then(onDone)} />
          {p.state === 'disabled' ? (
            <Action label="Enable" kind="primary" testid="enable" run={() => session.request('plugin.enable', { plugin_id: p.id }).then(onDone)} />
          ) : (
            <Action label="Disable" testid="disable" run={() => session.request('plugin.disable', { plugin_id: p.id }).then(onDone)} />
          )}
          {p.grant && <Action label="Revoke grant" kind="danger" run={() => session.request('plugin.revoke', { plugin_id: p.id }).then(onDone)} />}
        </div>
      ) : (
        <p class="muted">Granting and enabling need operator.admin.</p>
      )}
    </article>
  );
}
