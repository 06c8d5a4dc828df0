import { useEffect, useState } from 'preact/hooks';
import type { OpPairingListResult, OpPresenceListResult } from '../../../sdk/types/contracts.js';
import { Action, Badge, ErrorBox, Hash, Loading, Time, stateTone } from '../components.js';
import { BrowserNode } from '../lib/node.js';
import { useLive, type OperatorSession } from '../lib/session.js';

type Pairing = OpPairingListResult['pairings'][number];

export function NodesPage({ session, node }: { session: OperatorSession; node: BrowserNode }) {
  const canPair = session.can('operator.pairing');
  const pairings = useLive(session, () => (canPair ? session.request<OpPairingListResult>('pairing.list', { limit: 200 }) : Promise.resolve({ pairings: [] })), ['pairing.', 'presence.'], []);
  const presence = useLive(session, () => session.request<OpPresenceListResult>('presence.list'), ['presence.'], []);
  const waiting = (pairings.data?.pairings ?? []).filter((p) => p.state === 'awaiting_human');
  const approved = (pairings.data?.pairings ?? []).filter((p) => p.state === 'approved');
  const ended = (pairings.data?.pairings ?? []).filter((p) => p.state === 'denied' || p.state === 'revoked');
  return (
    <div>
      <h1>Nodes and pairing</h1>
      <BrowserNodePanel session={session} node={node} />
      {!canPair && <p class="muted">Pairing needs operator.pairing; your token lacks it.</p>}
      <ErrorBox error={pairings.error} />
      <h2>
        Waiting for you <Badge tone={waiting.length > 0 ? 'warn' : 'neutral'}>{waiting.length}</Badge>
      </h2>
      {pairings.data === undefined && <Loading what="pairings" />}
      {waiting.length === 0 && pairings.data && <p class="muted">No node waits to be paired.</p>}
      <ul class="cards">
        {waiting.map((p) => (
          <li key={p.pairing_id}>
            <PairingApproval session={session} pairing={p} onDone={pairings.reload} />
          </li>
        ))}
      </ul>
      <h2>Approved</h2>
      <table class="table">
        <thead>
          <tr>
            <th>Node</th>
            <th>Trust</th>
            <th>Allowlist</th>
            <th>Connected</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {approved.map((p) => (
            <tr key={p.pairing_id}>
              <td>
                <strong>{p.node_name ?? '—'}</strong> <span class="muted">{p.label ?? ''}</span>
                <br />
                <Hash value={p.device_id} />
              </td>
              <td>{p.trust_level ?? '—'}</td>
              <td>
                {p.capability_allowlist.map((c) => (
                  <span key={c.id}>
                    <code>
                      {c.id}@{c.version}
                    </code>
                    {c.read_only ? ' (read-only)' : ''}{' '}
                  </span>
                ))}
              </td>
              <td>
                <Badge tone={p.connected ? 'good' : 'neutral'}>{p.connected ? 'connected' : 'offline'}</Badge>
              </td>
              <td>{canPair && <Action label="Revoke" kind="danger" testid={`pairing-revoke-${p.node_name ?? p.pairing_id}`} run={() => session.request('pairing.revoke', { pairing_id: p.pairing_id }).then(pairings.reload)} />}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {ended.length > 0 && (
        <details>
          <summary>Denied and revoked ({ended.length})</summary>
          <ul>
            {ended.map((p) => (
              <li key={p.pairing_id}>
                <code>{p.pairing_id}</code> {p.node_name ?? p.label ?? p.device_id} <Badge tone={stateTone(p.state)}>{p.state}</Badge> <Time iso={p.resolved_at} />
              </li>
            ))}
          </ul>
        </details>
      )}
      <h2>Presence</h2>
      <ErrorBox error={presence.error} />
      <table class="table" aria-label="presence">
        <thead>
          <tr>
            <th>Device</th>
            <th>Role</th>
            <th>Mode</th>
            <th>Label</th>
            <th>Since</th>
            <th>Last seen</th>
          </tr>
        </thead>
        <tbody>
          {(presence.data?.entries ?? []).map((e) => (
            <tr key={`${e.device_id}-${e.role}`}>
              <td>
                <Hash value={e.device_id} /> <Badge tone={e.connected ? 'good' : 'neutral'}>{e.connected ? `${e.connections} conn.` : 'gone'}</Badge>
              </td>
              <td>{e.role}</td>
              <td>{e.mode ?? '—'}</td>
              <td>{e.label ?? '—'}</td>
              <td>
                <Time iso={e.connected_since} />
              </td>
              <td>
                <Time iso={e.last_seen_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function PairingApproval({ session, pairing: p, onDone }: { session: OperatorSession; pairing: Pairing; onDone: () => void }) {
  const [allow, setAllow] = useState<string[]>(p.advertised.map((c) => c.id));
  const [readOnly, setReadOnly] = useState<string[]>([]);
  const [trust, setTrust] = useState<'local' | 'remote'>('remote');
  const [name, setName] = useState('');
  const toggle = (list: string[], id: string, on: boolean) => (on ? [...list.filter((x) => x !== id), id] : list.filter((x) => x !== id));
  return (
    <article class="card" data-testid={`pairing-${p.pairing_id}`} aria-label={`pairing ${p.pairing_id}`}>
      <header>
        <strong>{p.label ?? 'unnamed node'}</strong> <Badge tone="warn">awaiting you</Badge> <Badge tone={p.connected ? 'good' : 'neutral'}>{p.connected ? 'connected' : 'offline'}</Badge>
      </header>
      <dl class="kv">
        <dt>Pairing</dt>
        <dd>
          <code>{p.pairing_id}</code>
        </dd>
        <dt>Device</dt>
        <dd>
          <Hash value={p.device_id} />
        </dd>
        <dt>Platform</dt>
        <dd>{p.platform ?? '—'}</dd>
        <dt>From</dt>
        <dd>{p.remote_address}</dd>
        <dt>Requested</dt>
        <dd>
          <Time iso={p.requested_at} />
        </dd>
      </dl>
      <fieldset>
        <legend>Allow (advertised capabilities)</legend>
        {p.advertised.length === 0 && <p class="muted">It advertises nothing.</p>}
        {p.advertised.map((c) => (
          <div key={c.id} class="row">
            <label class="inline">
              <input type="checkbox" checked={allow.includes(c.id)} onChange={(e) => setAllow(toggle(allow, c.id, (e.target as HTMLInputElement).checked))} />{' '}
              <code>
                {c.id}@{c.version}
              </code>
            </label>
            <label class="inline">
              <input type="checkbox" checked={readOnly.includes(c.id)} disabled={!allow.includes(c.id)} onChange={(e) => setReadOnly(toggle(readOnly, c.id, (e.target as HTMLInputElement).checked))} /> read-only (no approval per call)
            </label>
            <Hash value={c.definition_hash} />
          </div>
        ))}
      </fieldset>
      <div class="row wrap">
        <label>
          Trust{' '}
          <select value={trust} onChange={(e) => setTrust((e.target as HTMLSelectElement).value === 'local' ? 'local' : 'remote')}>
            <option value="remote">remote</option>
            <option value="local">local</option>
          </select>
        </label>
        <label>
          Name <input type="text" value={name} placeholder="e.g. laptop" pattern="[a-z0-9][a-z0-9_-]{0,62}" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <Action
          label="Approve"
          kind="primary"
          testid="pair-approve"
          run={() =>
            session
              .request('pairing.approve', {
                pairing_id: p.pairing_id,
                trust_level: trust,
                capability_allowlist: p.advertised.filter((c) => allow.includes(c.id)).map((c) => ({ id: c.id, version: c.version })),
                read_only: readOnly.filter((id) => allow.includes(id)),
                ...(name.trim() !== '' ? { node_name: name.trim() } : {}),
              })
              .then(onDone)
          }
        />
        <Action label="Deny" kind="danger" run={() => session.request('pairing.deny', { pairing_id: p.pairing_id }).then(onDone)} />
      </div>
    </article>
  );
}

function BrowserNodePanel({ session, node }: { session: OperatorSession; node: BrowserNode }) {
  const [, setTick] = useState(0);
  const [tool, setTool] = useState<string | null>(null);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, []);
  const s = node.state;
  const perm = BrowserNode.notifyPermission();
  const running = s.state !== 'stopped' && s.state !== 'failed';
  return (
    <section class="card" aria-labelledby="bn-title" data-testid="browser-node">
      <h2 id="bn-title">Use this browser as a node</h2>
      <p class="muted">
        Starts a node inside this tab with its own device key (not this operator session's), bootstrapped by a single-use token this session asks the gateway for. It enters the ordinary pairing flow below and offers <code>browser.notify</code>, which works only
        once this browser allows notifications, and <code>browser.location</code>, which works only once it allows location. Calls to it go through policy and approvals like any node.
      </p>
      <dl class="kv">
        <dt>Node state</dt>
        <dd data-testid="node-state">
          <Badge tone={s.state === 'paired' ? 'good' : s.state === 'failed' ? 'bad' : running ? 'warn' : 'neutral'}>{s.state.replace('_', ' ')}</Badge> {s.state === 'stopped' && s.reason ? <span class="muted">{s.reason}</span> : null}
          {s.state === 'failed' ? <span class="error">{s.reason}</span> : null}
        </dd>
        <dt>Node device</dt>
        <dd>
          <Hash value={node.deviceId} />
        </dd>
        <dt>Notifications</dt>
        <dd>
          <Badge tone={perm === 'granted' ? 'good' : 'warn'}>{perm}</Badge>
        </dd>
      </dl>
      <div class="row wrap">
        {!running ? <Action label="Start browser node" kind="primary" testid="node-start" disabled={!session.can('operator.pairing')} run={() => node.start()} /> : <Action label="Stop browser node" run={async () => node.stop()} />}
        {perm !== 'granted' && perm !== 'unsupported' && <Action label="Allow notifications" run={() => node.requestNotifyPermission()} />}
        {running && <Action label="Allow location" run={() => node.requestLocationPermission()} />}
        {running && <Action label="Report readiness again" run={() => node.reportReady()} />}
        {s.state === 'paired' && session.can('operator.write') && (
          <Action
            label="Send a test notification"
            testid="node-notify"
            run={async () => {
              const r = await session.request<{ run_id: string; state: string }>('tool.invoke', { tool_id: `node.browser.notify@${s.nodeName ?? node.deviceId}`, args: { title: 'Hello from Tyrum', body: 'browser.notify ran through the pipeline' }, wait_ms: 1000 });
              setTool(`${r.run_id}: ${r.state}`);
            }}
          />
        )}
      </div>
      {tool && (
        <p>
          Test call: <a href={`#/runs/${encodeURIComponent(tool.split(':')[0] ?? '')}`}>{tool}</a> (an approval may wait on the Approvals page)
        </p>
      )}
      {node.log.length > 0 && (
        <details>
          <summary>Node log</summary>
          <ul class="log">
            {node.log.map((l, i) => (
              <li key={`${l.at}-${i}`}>
                <Time iso={l.at} /> {l.text}
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}
