import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gatewayWithAdmin, connect, databaseText } from '../../helpers/gateway.js';
import { main } from '../../../core/cli/main.js';
import { listAudit } from '../../../core/audit/index.js';
import { pluginDir, installEnabled, BUILT } from './helpers.js';

const CLI = { kind: 'cli', user: 'test' };
const code = (r: Record<string, unknown>) => (r.error as { code?: string } | undefined)?.code;
/** A request error's code, or for an accepted call the failed run's wire error code ('ok' when it succeeded). */
const outcome = (r: Record<string, unknown>): string | undefined => {
  if (r.ok !== true) return code(r);
  const res = r.result as { state: string; error: { wire: string } | null };
  return res.state === 'succeeded' ? 'ok' : (res.error?.wire ?? res.state);
};
const message = (r: Record<string, unknown>): string => (r.ok === true ? ((r.result as { error: { message: string } | null }).error?.message ?? '') : (r.error as { message: string }).message);
const quiet = { out: () => undefined, err: () => undefined };

t.test('plugins through the gateway', async (t) => {
  const { gw, admin } = await gatewayWithAdmin(t);

  t.test('install, see it quarantined, grant, enable and call it over the protocol', async (t) => {
    await gw.plugins.install(BUILT.textUtils, CLI);
    let list = await admin.conn.request('tool.list');
    t.same((list.result as { tools: unknown[] }).tools, [], 'a quarantined plugin contributes no tools');
    const denied = await admin.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'a b' } });
    t.equal(code(denied), 'not_found', 'deny by default');
    const info = await admin.conn.request('plugin.get', { plugin_id: 'text-utils' });
    t.equal((info.result as { plugin: { state: string } }).plugin.state, 'disabled');
    const enable = await admin.conn.request('plugin.enable', { plugin_id: 'text-utils' });
    t.equal(code(enable), 'invalid_state');
    t.match((enable.error as { message: string }).message, /not granted/);
    t.equal((await admin.conn.request('plugin.grant', { plugin_id: 'text-utils', all_requested: true })).ok, true);
    t.equal((await admin.conn.request('plugin.enable', { plugin_id: 'text-utils' })).ok, true);
    const lifecycle = await admin.conn.event('plugin.lifecycle');
    t.match(lifecycle.payload, { plugin_id: 'text-utils', version: '1.0.0' }, 'lifecycle changes are pushed as events');
    list = await admin.conn.request('tool.list');
    const tools = (list.result as { tools: Array<{ tool_id: string; definition_hash: string; plugin_digest: string }> }).tools;
    t.same(tools.map((x) => x.tool_id), ['text-utils.transform', 'text-utils.word_count']);
    t.ok(tools.every((x) => /^[0-9a-f]{64}$/.test(x.definition_hash)));
    const r = await admin.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'héllo wörld 😀\nline two' } });
    t.equal(r.ok, true, JSON.stringify(r.error));
    const res = r.result as { output: { words: number; lines: number }; usage: { host_calls: number }; definition_hash: string; duration_ms: number };
    t.same(res.output, { words: 5, chars: 22, lines: 2 });
    t.equal(res.definition_hash, tools.find((x) => x.tool_id === 'text-utils.word_count')!.definition_hash);
    t.ok(res.usage.host_calls > 0);
    await gw.audit.flush();
    const call = listAudit(gw.store, { type: 'tool.invoked' }).at(-1)!;
    t.match(call.data, { tool_id: 'text-utils.word_count', outcome: 'ok', plugin_digest: /^[0-9a-f]{64}$/, definition_hash: res.definition_hash });
  });

  t.test('arguments that break the input schema are refused before the sandbox runs', async (t) => {
    const r = await admin.conn.request('tool.invoke', { tool_id: 'text-utils.transform', args: { text: 'x', op: 'explode' } });
    t.equal(code(r), 'invalid_request');
    t.match(JSON.stringify(r.error), /\/op/);
  });

  t.test('a read-only token cannot invoke tools or change plugins', async (t) => {
    const { token } = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    const reader = await connect(gw, { token });
    t.equal(code(await reader.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'x' } })), 'forbidden');
    t.equal(code(await reader.conn.request('plugin.disable', { plugin_id: 'text-utils' })), 'forbidden');
    t.equal((await reader.conn.request('tool.list')).ok, true, 'but may list');
    reader.conn.ws.close();
  });

  t.test('changes made by the CLI apply to the very next request', async (t) => {
    t.equal(await main(['plugin', 'disable', 'text-utils', '--home', gw.home], quiet), 0);
    const tools = ((await admin.conn.request('tool.list')).result as { tools: unknown[] }).tools;
    t.same(tools, [], 'disabled from the CLI: its tools are gone');
    t.equal(code(await admin.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'x' } })), 'not_found');
    t.equal(await main(['plugin', 'enable', 'text-utils', '--home', gw.home], quiet), 0);
    t.equal((await admin.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'x' } })).ok, true, 'enabled again from the CLI, no wait');
  });

  t.test('a tampered module on disk is refused at load, naming both digests (D8)', async (t) => {
    await installEnabled(gw.plugins, await pluginDir(t.testdir(), { id: 'tamper', wat: 'echo', tools: [{ id: 'echo' }] }));
    const dir = join(gw.home, 'plugins', 'tamper', '1.0.0');
    const wasmPath = join(dir, readdirSync(dir).find((f) => f.endsWith('.wasm'))!);
    const bytes = readFileSync(wasmPath);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    writeFileSync(wasmPath, bytes);
    const r = await admin.conn.request('tool.invoke', { tool_id: 'tamper.echo', args: { text: 'x' } });
    t.equal(outcome(r), 'sandbox_error', 'the run failed');
    t.match(message(r), /[0-9a-f]{64}.*[0-9a-f]{64}/s);
    t.equal((await admin.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'x' } })).ok, true, 'other plugins unaffected');
  });

  t.test('a plugin that loops forever is stopped at its budget; the gateway keeps answering (D1)', async (t) => {
    await installEnabled(gw.plugins, await pluginDir(t.testdir(), { id: 'hostile', wat: 'hostile', tools: [{ id: 'spin' }, { id: 'ok' }], requests: { time: { timeout_ms: 300 } } }));
    const pending = admin.conn.request('tool.invoke', { tool_id: 'hostile.spin', args: {}, wait_ms: 20_000 }, 25_000);
    const health = await fetch(`http://127.0.0.1:${gw.port}/healthz`);
    t.equal(health.status, 200, '/healthz answers while the plugin spins');
    t.equal((await admin.conn.request('ping')).ok, true);
    const r = await pending;
    t.equal(outcome(r), 'timeout', 'the call was stopped at its 300 ms budget (a spent budget is not retried)');
    const detail = await admin.conn.request('run.get', { run_id: (r.result as { run_id: string }).run_id });
    const attempts = (detail.result as { steps: Array<{ attempts: Array<{ duration_ms: number }> }> }).steps[0]!.attempts;
    t.ok(attempts.length >= 1 && attempts.every((a) => a.duration_ms < 10_000), `each attempt stopped at its budget, not after the 20 s wait (${attempts.map((a) => a.duration_ms).join(', ')} ms; a hang guard)`);
    const junk = await admin.conn.request('tool.invoke', { tool_id: 'hostile.ok', args: {} });
    t.equal(outcome(junk), 'sandbox_error', 'output that is not JSON is a sandbox_error, not a success');
    t.match(message(junk), /not JSON/);
  });

  t.test('output that breaks the output schema is never reported as success', async (t) => {
    // The real word_count module, declared with an output schema its output does not meet.
    const wasm = readFileSync(join(BUILT.textUtils, 'plugin.wasm'));
    await installEnabled(gw.plugins, await pluginDir(t.testdir(), { id: 'liar', wat: wasm, tools: [{ id: 'echo', export: 'word_count', output: { type: 'object', required: ['answer'] } }] }));
    const r = await admin.conn.request('tool.invoke', { tool_id: 'liar.echo', args: { text: 'no answer here' } });
    t.equal(outcome(r), 'sandbox_error');
    t.match(message(r), /output schema/);
  });
});

t.test('a tool\'s declared postcondition is checked on every output; failing it is never success', async (t) => {
  const { gw, admin } = await gatewayWithAdmin(t);
  const wasm = readFileSync(join(BUILT.textUtils, 'plugin.wasm'));
  await installEnabled(
    gw.plugins,
    await pluginDir(t.testdir(), {
      id: 'counted',
      wat: wasm,
      tools: [
        { id: 'two_words', export: 'word_count', postcondition: { path: '/words', equals: 2 } },
        { id: 'shape', export: 'word_count', postcondition: { path: '/missing', exists: true } },
      ],
    }),
  );
  t.equal(outcome(await admin.conn.request('tool.invoke', { tool_id: 'counted.two_words', args: { text: 'two words' } })), 'ok', 'the postcondition holds');
  const bad = await admin.conn.request('tool.invoke', { tool_id: 'counted.two_words', args: { text: 'three whole words' } });
  t.equal((bad.result as { state: string }).state, 'failed');
  t.match((bad.result as { error: { code: string } }).error.code, /POSTCONDITION/);
  const unverifiable = await admin.conn.request('tool.invoke', { tool_id: 'counted.shape', args: { text: 'x' } });
  t.equal((unverifiable.result as { state: string }).state, 'failed', 'an unverifiable postcondition is a failure too');
  const detail = await admin.conn.request('run.get', { run_id: (bad.result as { run_id: string }).run_id });
  t.match((detail.result as { steps: Array<{ attempts: Array<{ result: unknown }> }> }).steps[0]!.attempts[0]!.result, { words: 3 }, 'the output is kept as evidence');
});

t.test('a plugin can use a secret only toward its bound destination and never sees it (D4, D6)', async (t) => {
  const CANARY = `CANARY-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  const OTHER = `OTHER-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  const seen: Array<{ host: string; auth: string | undefined; url: string }> = [];
  const handler = (req: IncomingMessage, res: import('node:http').ServerResponse) => {
    seen.push({ host: req.socket.localAddress ?? '', auth: req.headers.authorization, url: req.url ?? '' });
    res.setHeader('content-type', 'application/json');
    // A hostile or careless API that echoes the credential back.
    res.end(JSON.stringify({ echoed: req.headers.authorization ?? null, also: req.headers['x-leak'] ?? null }));
  };
  const bound = createServer(handler);
  const other = createServer(handler);
  await new Promise<void>((r) => bound.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => other.listen(0, '127.0.0.2', () => r()));
  t.teardown(() => {
    bound.close();
    other.close();
  });
  const bport = (bound.address() as AddressInfo).port;
  const oport = (other.address() as AddressInfo).port;

  const { gw, admin } = await gatewayWithAdmin(t);
  // The servers speak plain http: the bindings name their origins (a bare host is https:443 only).
  gw.secrets.set('API_TOKEN', Buffer.from(CANARY), [`http://127.0.0.1:${bport}`]);
  gw.secrets.set('OTHER_TOKEN', Buffer.from(OTHER), [`http://127.0.0.2:${oport}`]);

  // The first-party http-api plugin, pointed at the bound server by the operator's grant.
  await gw.plugins.install(BUILT.httpApi, CLI);
  await gw.plugins.grant('http-api', { grant: { egress: [{ host: '127.0.0.1', scheme: 'http', port: bport }], secrets: [{ name: 'API_TOKEN', destinations: [`http://127.0.0.1:${bport}`] }] }, acceptRisks: ['network', 'secrets'] }, CLI);
  await gw.plugins.configure('http-api', { base_url: `http://127.0.0.1:${bport}` }, CLI);
  await gw.plugins.enable('http-api', CLI);

  // An attacker-style plugin: sends whatever request descriptor it is given.
  const fetcher = await pluginDir(t.testdir(), {
    id: 'fetcher',
    wat: 'http',
    tools: [{ id: 'fetch', input: { type: 'object' }, output: {} }],
    requests: { egress: [{ host: '*', methods: ['GET'] }], secrets: [{ name: 'API_TOKEN', destinations: ['*'] }] },
    risk: ['network', 'secrets'],
  });
  await gw.plugins.install(fetcher, CLI);
  await gw.plugins.grant(
    'fetcher',
    {
      grant: {
        egress: [
          { host: '127.0.0.1', scheme: 'http', port: bport },
          { host: '127.0.0.2', scheme: 'http', port: oport },
        ],
        secrets: [{ name: 'API_TOKEN', destinations: [`http://127.0.0.1:${bport}`] }],
      },
      acceptRisks: ['network', 'secrets'],
    },
    CLI,
  );
  await gw.plugins.enable('fetcher', CLI);

  const outputs: string[] = [];
  const call = async (tool_id: string, args: Record<string, unknown>) => {
    const r = await admin.conn.request('tool.invoke', { tool_id, args }, 10_000);
    outputs.push(JSON.stringify(r));
    return r;
  };

  const ok = await call('http-api.get_json', { path: '/v1/items' });
  t.equal(outcome(ok), 'ok', JSON.stringify(ok));
  t.equal(seen.at(-1)?.auth, `Bearer ${CANARY}`, 'the bound destination received the real token');
  t.same((ok.result as { output: { body: { echoed: string } } }).output.body.echoed, 'Bearer [REDACTED:API_TOKEN]', 'the echoed token was redacted before the plugin saw it');

  const before = seen.length;
  const toOther = await call('fetcher.fetch', { url: `http://127.0.0.2:${oport}/x`, method: 'GET', headers: { 'x-leak': '{{secret:API_TOKEN}}' } });
  t.equal(outcome(toOther), 'sandbox_error', 'the secret may not go to another granted host');
  const otherHandle = await call('fetcher.fetch', { url: `http://127.0.0.1:${bport}/x`, method: 'GET', headers: { 'x-leak': '{{secret:OTHER_TOKEN}}' } });
  t.equal(outcome(otherHandle), 'sandbox_error', 'another handle it was not granted is refused');
  const ungranted = await call('fetcher.fetch', { url: `http://127.0.0.3:${bport}/x`, method: 'GET', headers: {} });
  t.equal(outcome(ungranted), 'sandbox_error', 'an ungranted host is refused');
  const metadata = await call('fetcher.fetch', { url: 'http://169.254.169.254/latest/meta-data/', method: 'GET', headers: {} });
  t.equal(outcome(metadata), 'sandbox_error', 'the metadata address is refused');
  t.equal(seen.length, before, 'no refused request reached any server');
  const echo = await call('fetcher.fetch', { url: `http://127.0.0.1:${bport}/echo`, method: 'GET', headers: { 'x-leak': '{{secret:API_TOKEN}}' } });
  t.equal(outcome(echo), 'ok', JSON.stringify(echo));
  t.match(JSON.stringify(echo.result), /\[REDACTED:API_TOKEN\]/);

  // The canary never appears anywhere but on the wire to its bound destination.
  await gw.audit.flush();
  const everywhere = [
    ...outputs,
    JSON.stringify(listAudit(gw.store, { limit: 1000 })),
    JSON.stringify(admin.conn.frames),
    databaseText(gw.home),
  ].join('\n');
  t.notOk(everywhere.includes(CANARY), 'the canary is in no output, audit entry, event or database page');
  t.notOk(everywhere.includes(OTHER), 'nor is the other secret');
  t.ok(seen.filter((s) => s.auth?.includes(CANARY)).every((s) => s.host === '127.0.0.1'), 'only the bound destination ever received it');
});
