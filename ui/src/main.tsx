/**
 * The operator web UI: sign-in, navigation and the pages. An ordinary protocol client over /ws
 * (lib/client.ts); the gateway serves these files and nothing else for it.
 */
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { chime, setSoundMuted, soundMuted, unlockAudioOnGesture } from './lib/chime.js';
import type { Status } from './lib/client.js';
import { deleteSecret, getSecret, loadOrCreateDeviceKey, setSecret, webCryptoEd25519Available } from './lib/keys.js';
import { BrowserNode } from './lib/node.js';
import { OperatorSession } from './lib/session.js';
import { ApprovalsPage } from './pages/approvals.js';
import { AuditPage, HealthPage } from './pages/audit.js';
import { ConversationsPage } from './pages/conversations.js';
import { McpPage } from './pages/mcp.js';
import { NodesPage } from './pages/nodes.js';
import { PluginsPage } from './pages/plugins.js';
import { RunsPage } from './pages/runs.js';
import { WorkflowsPage } from './pages/workflows.js';

const TOKEN_RE = /^tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;

const PAGES = [
  ['approvals', 'Approvals'],
  ['runs', 'Runs'],
  ['workflows', 'Workflows'],
  ['plugins', 'Plugins'],
  ['mcp', 'MCP'],
  ['nodes', 'Nodes'],
  ['conversations', 'Conversations'],
  ['audit', 'Audit'],
  ['health', 'Health'],
] as const;
type PageId = (typeof PAGES)[number][0];

function parseRoute(hash: string): { page: PageId; id: string | null } {
  const m = /^#\/([a-z]+)(?:\/(.+))?$/.exec(hash);
  const page = (PAGES.find(([id]) => id === m?.[1])?.[0] ?? 'approvals') as PageId;
  let id: string | null = null;
  try {
    id = m?.[2] ? decodeURIComponent(m[2]) : null;
  } catch {
    id = null;
  }
  return { page, id };
}

/**
 * A token in the URL fragment (`tyrum ui` prints `http://host:port/#token=...`): taken once, stored,
 * and removed from the address bar and history. Fragments never reach the server.
 */
function takeFragmentToken(): string | null {
  const m = /^#token=([^&]+)$/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, '', location.pathname + '#/approvals');
  let t: string;
  try {
    t = decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
  return TOKEN_RE.test(t) ? t : null;
}

function App() {
  const [token, setToken] = useState<string | null | undefined>(undefined);
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    if (!webCryptoEd25519Available()) {
      setProblem('This page needs WebCrypto and IndexedDB, which browsers offer only in a secure context: open it over https, or as http://127.0.0.1 / http://localhost.');
      setToken(null);
      return;
    }
    const fromLink = takeFragmentToken();
    (fromLink ? setSecret('operator-token', fromLink).then(() => fromLink) : getSecret('operator-token'))
      .then((t) => setToken(t ?? null))
      .catch((e: unknown) => {
        setProblem(`Cannot use this browser's storage: ${e instanceof Error ? e.message : String(e)}`);
        setToken(null);
      });
  }, []);
  if (token === undefined) return <p class="muted pad">Starting…</p>;
  if (token === null) return <SignIn problem={problem} onToken={(t) => void setSecret('operator-token', t).then(() => setToken(t))} />;
  return (
    <Signed
      token={token}
      onSignOut={(why) => {
        void deleteSecret('operator-token').then(() => {
          setProblem(why);
          setToken(null);
        });
      }}
    />
  );
}

function SignIn({ problem, onToken }: { problem: string | null; onToken: (t: string) => void }) {
  const [text, setText] = useState('');
  const valid = TOKEN_RE.test(text.trim());
  return (
    <main class="signin">
      <h1>Tyrum</h1>
      <p>Sign in with an operator token: the one the gateway printed at its first start, or one from `tyrum token create`. Or open the link `tyrum ui` prints.</p>
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (valid) onToken(text.trim());
        }}
      >
        <label>
          Token
          <input type="password" autoComplete="off" spellcheck={false} value={text} placeholder="tyrum_…" onInput={(e) => setText((e.target as HTMLInputElement).value)} data-testid="token-input" />
        </label>
        <button type="submit" class="btn btn-primary" disabled={!valid} data-testid="sign-in">
          Sign in
        </button>
      </form>
      <p class="muted">The token stays in this browser (IndexedDB). The browser makes its own device key, which never leaves it.</p>
    </main>
  );
}

function Signed({ token, onSignOut }: { token: string; onSignOut: (why: string | null) => void }) {
  const [session, setSession] = useState<OperatorSession | null>(null);
  const [status, setStatus] = useState<Status>({ state: 'connecting', attempt: 0 });
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  const [pending, setPending] = useState(0);
  const [announce, setAnnounce] = useState('');
  const [, setNodeTick] = useState(0);
  const [muted, setMuted] = useState(soundMuted);
  // Pending approvals already seen (at load or since): only others are new. Kept across reconnects,
  // so one that arrived while the socket was down is still announced once.
  const seen = useRef<Set<string> | null>(null);
  useEffect(unlockAudioOnGesture, []);
  useEffect(() => {
    const onHash = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    let s: OperatorSession | null = null;
    let stopped = false;
    void loadOrCreateDeviceKey('client').then((key) => {
      if (stopped) return;
      s = new OperatorSession(token, key);
      s.onStatus((st) => {
        setStatus(st);
        if (st.state === 'closed' && st.terminal) onSignOut(`Signed out: ${st.reason}`);
      });
      setSession(s);
      s.client.start();
    });
    return () => {
      stopped = true;
      s?.client.stop('page closed');
    };
  }, [token]);
  const node = useMemo(
    () =>
      new BrowserNode(
        async () => {
          if (!session) throw new Error('not connected');
          const r = await session.request<{ token: string }>('node.bootstrap', { label: 'browser node' });
          return r.token;
        },
        () => setNodeTick((n) => n + 1),
      ),
    [session],
  );
  useEffect(() => () => node.stop('page closed'), [node]);
  // The pending-approvals badge: counted at start and after every approval event. A pending
  // approval not seen before (not one there when the page loaded) is announced and chimes.
  useEffect(() => {
    if (!session || status.state !== 'open') return;
    // Answers can arrive out of order: only one newer than the last applied counts.
    let asked = 0;
    let applied = 0;
    const count = () => {
      const n = ++asked;
      return session
        .request<{ approvals: Array<{ id: string }> }>('approval.list', { state: 'pending', limit: 500 })
        .then((r) => {
          if (n < applied) return;
          applied = n;
          const ids = r.approvals.map((a) => a.id);
          if (seen.current === null) seen.current = new Set(ids);
          else {
            const fresh = ids.filter((id) => !seen.current!.has(id));
            seen.current = new Set(ids); // resolved approvals never return to pending
            if (fresh.length > 0) {
              setAnnounce(`${fresh.length} new approval${fresh.length > 1 ? 's' : ''} waiting`);
              chime();
            }
          }
          setPending(ids.length);
        })
        .catch(() => undefined);
    };
    void count();
    const off = session.onEvent((e) => {
      if (e.type === 'approval.updated') void count();
    });
    return off;
  }, [session, status.state]);
  useEffect(() => {
    document.title = pending > 0 ? `(${pending}) Tyrum` : 'Tyrum';
  }, [pending]);

  const open = status.state === 'open';
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <strong class="brand">Tyrum</strong>
        <nav aria-label="pages">
          <ul>
            {PAGES.map(([id, label]) => (
              <li key={id}>
                <a href={`#/${id}`} aria-current={route.page === id ? 'page' : undefined} data-testid={`nav-${id}`}>
                  {label}
                  {id === 'approvals' && pending > 0 && (
                    <span class="count" data-testid="approval-badge" aria-label={`${pending} pending`}>
                      {pending}
                    </span>
                  )}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class={`conn conn-${status.state}`} data-testid="conn-state" title={status.state === 'open' ? `device ${status.deviceId}; scopes ${status.scopes.join(', ')}` : undefined}>
          {status.state === 'open' ? 'live' : status.state === 'reconnecting' ? 'reconnecting…' : status.state}
        </span>
        <button
          type="button"
          class="btn btn-small"
          aria-pressed={!muted}
          data-testid="sound-toggle"
          title="A short tone when a new approval arrives"
          onClick={() => {
            setSoundMuted(!muted);
            setMuted(!muted);
          }}
        >
          {muted ? 'Sound off' : 'Sound on'}
        </button>
        <button type="button" class="btn btn-small" onClick={() => onSignOut(null)}>
          Sign out
        </button>
      </header>
      <p class="sr-only" aria-live="assertive">
        {announce}
      </p>
      <main id="main" tabIndex={-1}>
        {!session || !open ? (
          <p class="muted pad">{status.state === 'reconnecting' ? `Connection lost (${status.code}); reconnecting…` : 'Connecting to the gateway…'}</p>
        ) : (
          <Page route={route} session={session} node={node} />
        )}
      </main>
    </div>
  );
}

function Page({ route, session, node }: { route: { page: PageId; id: string | null }; session: OperatorSession; node: BrowserNode }) {
  switch (route.page) {
    case 'approvals':
      return <ApprovalsPage session={session} />;
    case 'runs':
      return <RunsPage session={session} runId={route.id} />;
    case 'workflows':
      return <WorkflowsPage session={session} workflowId={route.id} />;
    case 'plugins':
      return <PluginsPage session={session} />;
    case 'mcp':
      return <McpPage session={session} />;
    case 'nodes':
      return <NodesPage session={session} node={node} />;
    case 'conversations':
      return <ConversationsPage session={session} conversationId={route.id} />;
    case 'audit':
      return <AuditPage session={session} />;
    case 'health':
      return <HealthPage session={session} />;
  }
}

render(<App />, document.getElementById('app')!);
