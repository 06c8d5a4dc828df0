/**
 * Small shared pieces. Everything the gateway sends is data: it is rendered as text nodes (Preact
 * escapes them), never as HTML.
 */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';

/** Strings longer than this, and objects/arrays with more entries, start collapsed. */
const LONG_STRING = 160;
const MANY_ENTRIES = 12;

/** Pretty JSON with anything large collapsed behind a toggle (keyboard: it is a <details>). */
export function JsonView({ value, depth = 0 }: { value: unknown; depth?: number }) {
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return <span class="j-lit">{String(value)}</span>;
  if (typeof value === 'string') {
    if (value.length <= LONG_STRING) return <span class="j-str">{JSON.stringify(value)}</span>;
    return (
      <details class="j-long">
        <summary>
          <span class="j-str">{JSON.stringify(value.slice(0, 60))}</span> … ({value.length} chars)
        </summary>
        <pre class="j-full">{value}</pre>
      </details>
    );
  }
  if (typeof value !== 'object') return <span>{String(value)}</span>;
  const entries: Array<[string, unknown]> = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value as Record<string, unknown>);
  const open = Array.isArray(value) ? '[' : '{';
  const close = Array.isArray(value) ? ']' : '}';
  if (entries.length === 0) return <span>{open + close}</span>;
  const body = (
    <ul class="j-obj">
      {entries.map(([k, v]) => (
        <li key={k}>
          {!Array.isArray(value) && <span class="j-key">{JSON.stringify(k)}: </span>}
          <JsonView value={v} depth={depth + 1} />
        </li>
      ))}
    </ul>
  );
  if (entries.length > MANY_ENTRIES || depth >= 3) {
    return (
      <details class="j-long">
        <summary>
          {open} {entries.length} {Array.isArray(value) ? 'items' : 'keys'} {close}
        </summary>
        {body}
      </details>
    );
  }
  return (
    <span>
      {open}
      {body}
      {close}
    </span>
  );
}

/** A button that runs an async action, disables itself meanwhile and reports a failure. */
export function Action({ label, run, kind = 'normal', disabled = false, title, testid }: { label: string; run: () => Promise<unknown>; kind?: 'normal' | 'primary' | 'danger'; disabled?: boolean; title?: string; testid?: string }) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  return (
    <span class="action">
      <button
        type="button"
        class={`btn btn-${kind}`}
        disabled={disabled || busy}
        title={title}
        data-testid={testid}
        onClick={() => {
          setBusy(true);
          setErr(null);
          run()
            .catch((e: unknown) => setErr(e instanceof Error ? e.message : String(e)))
            .finally(() => setBusy(false));
        }}
      >
        {busy ? `${label}…` : label}
      </button>
      {err && (
        <span class="error" role="alert">
          {err}
        </span>
      )}
    </span>
  );
}

export function ErrorBox({ error }: { error: string | null }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

export function Loading({ what }: { what: string }) {
  return <p class="muted">Loading {what}…</p>;
}

export function Time({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span class="muted">—</span>;
  const d = new Date(iso);
  return <time dateTime={iso} title={iso}>{Number.isNaN(d.getTime()) ? iso : d.toLocaleString()}</time>;
}

export function Badge({ children, tone = 'neutral' }: { children: ComponentChildren; tone?: 'neutral' | 'good' | 'warn' | 'bad' }) {
  return <span class={`badge badge-${tone}`}>{children}</span>;
}

export function Hash({ value }: { value: string | null | undefined }) {
  if (!value) return <span class="muted">—</span>;
  return (
    <code class="hash" title={value}>
      {value.length > 16 ? `${value.slice(0, 12)}…` : value}
    </code>
  );
}

export function stateTone(state: string): 'neutral' | 'good' | 'warn' | 'bad' {
  if (['succeeded', 'approved', 'enabled', 'ok', 'ready', 'completed', 'delivered'].includes(state)) return 'good';
  if (['pending', 'paused', 'waiting_approval', 'awaiting_human', 'running', 'queued', 'outcome_unknown'].includes(state)) return 'warn';
  if (['failed', 'denied', 'revoked', 'cancelled', 'expired', 'disabled'].includes(state)) return 'bad';
  return 'neutral';
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}
