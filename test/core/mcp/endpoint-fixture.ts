// Shared by the /mcp endpoint tests (endpoint.test.ts, endpoint-limits.test.ts; split in two so
// each file fits tap's timeout on PostgreSQL): a gateway with plugins and a token, MCP clients,
// raw JSON-RPC posts.
import type { Test } from 'tap';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, removeHome, type TestGateway } from '../../helpers/gateway.js';
import { RUN_META_KEY, WAIT_META_KEY } from '../../../core/mcp/endpoint.js';
import { installEnabled, NOTES_RISKS } from '../registry/helpers.js';

export const TEXT_UTILS = new URL('../../../plugins/text-utils/build/', import.meta.url).pathname;
export const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
export const FLAKY = new URL('../../fixtures/mcp/flaky-server.mjs', import.meta.url).pathname;
export const CLI = { kind: 'cli', user: 'test' };

export type RunMeta = { run_id: string; state: string; approval_id: string | null; error: { code: string } | null };

/** A gateway with text-utils and notes enabled, word_count denied by policy, and a read+write token. */
export async function setup(t: Test): Promise<{ gw: TestGateway; token: string; tokenId: string }> {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, TEXT_UTILS);
  await installEnabled(gw.plugins, NOTES, NOTES_RISKS);
  gw.policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no-word-count', decision: 'deny', match: { tools: ['text-utils.word_count'] } }] }, 'test');
  const { token, record } = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], label: 'mcp client', createdBy: 'test' });
  return { gw, token, tokenId: record.id };
}

export const mcpUrl = (gw: TestGateway) => new URL(`http://127.0.0.1:${gw.port}/mcp`);

/** An official SDK client connected to the gateway's /mcp with a bearer token. */
export async function mcpClient(t: Test, gw: TestGateway, token: string): Promise<Client> {
  const client = new Client({ name: 'tyrum-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(mcpUrl(gw), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  t.teardown(() => client.close());
  return client;
}

export const text = (r: CallToolResult) => (r.content[0] as { type: 'text'; text: string }).text;
export const runMeta = (r: CallToolResult) => (r._meta as Record<string, RunMeta>)[RUN_META_KEY]!;

/** A raw MCP initialize POST (for status codes the SDK client hides). */
export function rawInit(gw: TestGateway, headers: Record<string, string>, query = ''): Promise<Response> {
  return fetch(`http://127.0.0.1:${gw.port}/mcp${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
}

export type RpcAnswer = { jsonrpc: '2.0'; id: number | string | null; result?: CallToolResult; error?: { code: number; message: string; data?: Record<string, unknown> } };

/**
 * POSTs a raw JSON-RPC body to /mcp and collects the answers as they arrive (an SSE stream, or one
 * JSON body): `answers` fills while the stream is open, `done` resolves when it ends.
 */
export function postRaw(gw: TestGateway, token: string, body: unknown): { answers: RpcAnswer[]; status: Promise<number>; done: Promise<void> } {
  const answers: RpcAnswer[] = [];
  let status!: (s: number) => void;
  const statusP = new Promise<number>((resolve) => (status = resolve));
  const done = (async () => {
    const res = await fetch(mcpUrl(gw), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    status(res.status);
    if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      const text = await res.text();
      if (text !== '') {
        const parsed = JSON.parse(text) as RpcAnswer | RpcAnswer[];
        answers.push(...(Array.isArray(parsed) ? parsed : [parsed]));
      }
      return;
    }
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (data !== '') answers.push(JSON.parse(data) as RpcAnswer);
      }
    }
  })();
  return { answers, status: statusP, done };
}

/** Polls `fn` until it is truthy, or fails after `ms` (a hang guard, not a timing assertion). */
export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const callItem = (id: number, name: string, args: Record<string, unknown>, waitMs = 60_000) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: { [WAIT_META_KEY]: waitMs } } });
