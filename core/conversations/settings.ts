/**
 * The model backend setting (`tyrum backend set`), stored in the database so a running gateway
 * picks up a change made from the CLI. The API key is a secret handle: its value is read when a
 * request is made, sent only in that request's Authorization header, and only when the handle's
 * destinations allow the backend's origin (the same rule as a plugin's egress).
 */
import type { BackendRow, Store } from '../store/index.js';
import { TyrumError } from '../errors/index.js';
import { destinationAllows, urlOrigin } from '../secrets/index.js';
import { globProblem } from '../policy/index.js';
import { OpenAiCompatibleBackend } from './openai.js';
import type { ExecutionBackend } from './backend.js';
import { MAX_STEPS_DEFAULT, type TurnSettings } from './turns.js';

export const BACKEND_NAME = 'default';
export const BACKEND_TIMEOUT_DEFAULT_MS = 120_000;
export const BACKEND_RETRIES_DEFAULT = 3;

export interface BackendInput {
  baseUrl: string;
  model: string;
  apiKeySecret?: string | null;
  systemPrompt?: string | null;
  tools?: string[];
  maxSteps?: number;
  timeoutMs?: number;
  maxRetries?: number;
}

export interface SecretAccess {
  has(name: string): boolean;
  destinations(name: string): string[];
  reveal(name: string): Buffer;
}

/** Checks and stores the backend setting; returns the stored row. */
export function setBackend(store: Store, secrets: SecretAccess, input: BackendInput, now = Date.now()): BackendRow {
  let url: URL;
  try {
    url = new URL(input.baseUrl);
  } catch {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--base-url ${JSON.stringify(input.baseUrl)} is not a URL (e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1)`);
  }
  const origin = urlOrigin(url);
  if (origin === null || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--base-url must be an http(s) URL without credentials, query or fragment');
  }
  if (!input.model || input.model.length > 200) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--model is required (at most 200 characters)');
  const key = input.apiKeySecret ?? null;
  if (key !== null) {
    if (!secrets.has(key)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `secret handle ${key} does not exist; create it first: printf %s "$KEY" | tyrum secret set ${key} --destinations ${url.origin}`);
    if (!secrets.destinations(key).some((d) => destinationAllows(d, origin))) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${key} may not be sent to ${url.origin}; bind it: tyrum secret set ${key} --destinations ${url.origin} (value on stdin)`);
    }
  }
  const tools = input.tools ?? ['*'];
  for (const g of tools) {
    const p = globProblem('tools', g);
    if (p !== null) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--tools ${JSON.stringify(g)}: ${p}`);
  }
  const int = (v: number | undefined, d: number, min: number, max: number, flag: string): number => {
    const n = v ?? d;
    if (!Number.isInteger(n) || n < min || n > max) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${flag} must be an integer from ${min} to ${max}`);
    return n;
  };
  const row: BackendRow = {
    name: BACKEND_NAME,
    kind: 'openai-compatible',
    base_url: url.toString().replace(/\/+$/, ''),
    model: input.model,
    api_key_secret: key,
    system_prompt: input.systemPrompt ?? null,
    tools: JSON.stringify(tools),
    max_steps: int(input.maxSteps, MAX_STEPS_DEFAULT, 1, 64, '--max-steps'),
    timeout_ms: int(input.timeoutMs, BACKEND_TIMEOUT_DEFAULT_MS, 1000, 600_000, '--timeout-ms'),
    max_retries: int(input.maxRetries, BACKEND_RETRIES_DEFAULT, 0, 10, '--max-retries'),
    updated_at: now,
  };
  store.tx(() => store.conversations.putBackend(row));
  return row;
}

/** Builds the backend a row describes (the key read per request, from its handle). */
export function backendFrom(row: BackendRow, secrets: SecretAccess): { backend: ExecutionBackend; settings: TurnSettings & { tools: string[] } } {
  const key = row.api_key_secret;
  const origin = urlOrigin(new URL(row.base_url));
  const backend = new OpenAiCompatibleBackend({
    baseUrl: row.base_url,
    model: row.model,
    timeoutMs: row.timeout_ms,
    idleTimeoutMs: Math.min(row.timeout_ms, 60_000),
    maxRetries: row.max_retries,
    apiKey:
      key === null
        ? () => null
        : () => {
            // Checked again per request: the binding may have changed since the setting was made.
            if (origin === null || !secrets.destinations(key).some((d) => destinationAllows(d, origin))) {
              throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `secret ${key} may not be sent to ${row.base_url}`);
            }
            return secrets.reveal(key).toString('utf8');
          },
  });
  return { backend, settings: { systemPrompt: row.system_prompt, maxSteps: row.max_steps, tools: JSON.parse(row.tools) as string[] } };
}

/** The current backend, rebuilt only when its row changes. */
export class BackendSource {
  private cached: { updatedAt: number; value: ReturnType<typeof backendFrom> } | null = null;

  constructor(
    private readonly store: Store,
    private readonly secrets: SecretAccess,
  ) {}

  current(): ReturnType<typeof backendFrom> {
    const row = this.store.conversations.backend(BACKEND_NAME);
    if (!row) throw new TyrumError('TYRUM_ERR_BACKEND_NOT_CONFIGURED', 'no model backend is configured: tyrum backend set --base-url URL --model NAME [--api-key-secret HANDLE]');
    if (this.cached?.updatedAt !== row.updated_at) this.cached = { updatedAt: row.updated_at, value: backendFrom(row, this.secrets) };
    return this.cached.value;
  }
}
