/**
 * `tyrum backend set|show|test`: the model endpoint agent turns use (an OpenAI-compatible Chat
 * Completions server: OpenAI, Ollama, vLLM, llama.cpp server, LM Studio). Stored in the home's
 * database, so a running gateway uses a change at its next model call. The API key is a secret
 * handle bound to the endpoint's origin; this command never sees or prints the value.
 */
import { TyrumError } from '../errors/index.js';
import { parse, subcommandError } from './args.js';
import { cliActor as who, intArg, withHome } from './home.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum backend set --base-url URL --model NAME [--api-key-secret HANDLE] [--system-prompt TEXT]
                    [--tools GLOB,...] [--max-steps N] [--timeout-ms MS] [--max-retries N]
        URL: the API base, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama)
        HANDLE: a secret bound to that origin: printf %s "$KEY" | tyrum secret set HANDLE --destinations https://api.openai.com
        --tools: tool ids offered to the model (globs; default *); tools the policy denies are never offered
        --max-steps: model calls per turn (default 8)
  tyrum backend show [--json]
  tyrum backend test [--prompt TEXT] [--json]      one real request to the endpoint (no tools); prints the answer`;

export async function backendCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parse(
    rest,
    {
      home: { type: 'string' },
      json: { type: 'boolean' },
      'base-url': { type: 'string' },
      model: { type: 'string' },
      'api-key-secret': { type: 'string' },
      'system-prompt': { type: 'string' },
      tools: { type: 'string' },
      'max-steps': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'max-retries': { type: 'string' },
      prompt: { type: 'string' },
    },
    0,
  );
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  const { setBackend, backendFrom, BACKEND_NAME } = await import('../conversations/settings.js');
  switch (sub) {
    case 'set': {
      if (values['base-url'] === undefined || values.model === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'usage: tyrum backend set --base-url URL --model NAME [--api-key-secret HANDLE] ...');
      return withHome(values.home, async (svc) => {
        const maxSteps = intArg(values['max-steps'], '--max-steps');
        const timeoutMs = intArg(values['timeout-ms'], '--timeout-ms');
        const maxRetries = intArg(values['max-retries'], '--max-retries');
        const row = setBackend(svc.store, svc.secrets, {
          baseUrl: values['base-url']!,
          model: values.model!,
          apiKeySecret: values['api-key-secret'] ?? null,
          systemPrompt: values['system-prompt'] ?? null,
          ...(values.tools !== undefined ? { tools: values.tools.split(',').map((s) => s.trim()).filter((s) => s !== '') } : {}),
          ...(maxSteps !== undefined ? { maxSteps } : {}),
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
          ...(maxRetries !== undefined ? { maxRetries } : {}),
        });
        await svc.audit.append('backend.set', who(), { base_url: row.base_url, model: row.model, api_key_secret: row.api_key_secret, tools: JSON.parse(row.tools) as string[], max_steps: row.max_steps });
        io.out(values.json ? JSON.stringify(view(row)) : `backend: ${row.model} at ${row.base_url}${row.api_key_secret ? ` (key: secret ${row.api_key_secret})` : ' (no key)'}; try it: tyrum backend test`);
        return 0;
      });
    }
    case 'show':
      return withHome(values.home, async (svc) => {
        const row = svc.store.conversations.backend(BACKEND_NAME);
        if (!row) {
          if (values.json) io.out(JSON.stringify({ backend: null }));
          else io.out('no backend configured (tyrum backend set --base-url URL --model NAME)');
          return 0;
        }
        if (values.json) io.out(JSON.stringify({ backend: view(row) }));
        else for (const [k, v] of Object.entries(view(row))) io.out(`${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`);
        return 0;
      });
    case 'test':
      return withHome(values.home, async (svc) => {
        const row = svc.store.conversations.backend(BACKEND_NAME);
        if (!row) throw new TyrumError('TYRUM_ERR_BACKEND_NOT_CONFIGURED', 'no backend configured (tyrum backend set --base-url URL --model NAME)');
        const { backend } = backendFrom(row, svc.secrets);
        const started = performance.now();
        let streamed = 0;
        const c = await backend.complete({
          messages: [{ role: 'user', content: values.prompt ?? 'Reply with one short sentence to confirm you are reachable.' }],
          tools: [],
          signal: AbortSignal.timeout(row.timeout_ms + 5000),
          onDelta: (d) => (streamed += d.length),
        });
        const ms = Math.round(performance.now() - started);
        if (values.json) io.out(JSON.stringify({ ok: true, model: c.model, content: c.content, usage: c.usage, attempts: c.attempts, latency_ms: ms, streamed_chars: streamed }));
        else {
          io.out(`ok: ${c.model ?? row.model} answered in ${ms} ms${c.attempts > 1 ? ` after ${c.attempts} attempts` : ''}${c.usage ? ` (${c.usage.total_tokens} tokens)` : ''}`);
          io.out(c.content ?? '(no text)');
        }
        return 0;
      });
    default:
      throw subcommandError('backend', sub);
  }
}

function view(row: { base_url: string; model: string; api_key_secret: string | null; system_prompt: string | null; tools: string; max_steps: number; timeout_ms: number; max_retries: number; updated_at: number }): Record<string, unknown> {
  return {
    base_url: row.base_url,
    model: row.model,
    api_key_secret: row.api_key_secret,
    system_prompt: row.system_prompt,
    tools: JSON.parse(row.tools) as string[],
    max_steps: row.max_steps,
    timeout_ms: row.timeout_ms,
    max_retries: row.max_retries,
    updated_at: new Date(row.updated_at).toISOString(),
  };
}
