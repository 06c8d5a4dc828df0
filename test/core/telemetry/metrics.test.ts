import t from 'tap';
import { startTestGateway, removeHome, connect, open, type TestGateway } from '../../helpers/gateway.js';
import { pluginDir, installEnabled, BUILT } from '../registry/helpers.js';
import { BUDGET_KINDS } from '../../../core/telemetry/index.js';

const CLI = { kind: 'cli', user: 'test' };

/** GET /metrics with `token` (none: no Authorization header). */
function scrape(gw: TestGateway, token: string | null): Promise<Response> {
  return fetch(`http://127.0.0.1:${gw.port}/metrics`, token === null ? {} : { headers: { authorization: `Bearer ${token}` } });
}

/** The value of one sample (`name{labels}`) in Prometheus text, 0 when absent. */
function sample(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (line.slice(0, sp) === series) return Number(line.slice(sp + 1));
  }
  return 0;
}

async function metrics(gw: TestGateway): Promise<string> {
  const res = await scrape(gw, gw.adminToken);
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  return res.text();
}

t.test('GET /metrics', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(BUILT.textUtils, CLI);
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI);
  await gw.plugins.enable('text-utils', CLI);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());

  t.test('answers 401 without a token, 403 without a metrics-reading scope, and Prometheus text with one', async (t) => {
    const none = await scrape(gw, null);
    t.equal(none.status, 401);
    t.equal(none.headers.get('www-authenticate'), 'Bearer realm="tyrum"');
    t.equal((await scrape(gw, 'tyrum_0123456789abcdef_nope')).status, 401, 'an unknown token');
    const writer = await gw.tokens.create({ scopes: ['operator.write', 'operator.approvals'], createdBy: 'test' });
    const forbidden = await scrape(gw, writer.token);
    t.equal(forbidden.status, 403);
    t.match(await forbidden.json(), { error: { code: 'forbidden', message: /operator\.metrics/ } });
    const reader = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    t.equal((await scrape(gw, reader.token)).status, 200, 'an operator.read token scrapes');
    const scraper = await gw.tokens.create({ scopes: ['operator.metrics'], createdBy: 'test', label: 'prometheus' });
    const ok = await scrape(gw, scraper.token);
    t.equal(ok.status, 200, 'so does a metrics-only token');
    t.match(ok.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const text = await ok.text();
    for (const name of ['tyrum_call_stage_duration_seconds', 'tyrum_store_commits_total', 'tyrum_connections', 'tyrum_event_loop_delay_seconds', 'process_cpu_seconds_total']) {
      t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
    }
    t.notMatch(text, /run_[0-9a-f]{8}-/, 'no run id in any label');
  });

  t.test('a metrics-only token reads the metrics and nothing else: no WebSocket session, no MCP session, no artifact', async (t) => {
    const scraper = await gw.tokens.create({ scopes: ['operator.metrics'], createdBy: 'test' });
    t.equal((await scrape(gw, scraper.token)).status, 200, 'it scrapes');
    for (const authVia of ['header', 'subprotocol'] as const) {
      const ws = await open(gw, { token: scraper.token, authVia });
      if (!('status' in ws)) ws.ws.close();
      t.match(ws, { status: 403, body: /only operator\.metrics/ }, `the WebSocket upgrade is refused (token in the ${authVia}): no ping, no presence entry`);
    }
    const mcp = await fetch(`http://127.0.0.1:${gw.port}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${scraper.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
    });
    t.equal(mcp.status, 403, 'an MCP session is refused');
    t.match(await mcp.json(), { error: { code: 'forbidden', message: /only operator\.metrics/ } });
    const artifact = await fetch(`http://127.0.0.1:${gw.port}/artifacts/sha256:${'0'.repeat(64)}`, { headers: { authorization: `Bearer ${scraper.token}` } });
    t.equal(artifact.status, 403, 'GET /artifacts is refused');
    // The refusal is answered before its audit entry commits (the entry is appended, not awaited):
    // wait for the entries (up to 10 s), then compare.
    const deniedNow = () => gw.audit.list({}).filter((e) => e.type === 'authz.denied' && (e.actor as { id?: string }).id === scraper.record.id).map((e) => (e.data as { request_type: string }).request_type);
    let denied = deniedNow();
    for (let i = 0; i < 200 && denied.length < 4; i++) {
      await new Promise((r) => setTimeout(r, 50));
      denied = deniedNow();
    }
    t.same(denied.sort(), ['GET /artifacts', 'POST /mcp', 'WebSocket upgrade', 'WebSocket upgrade'], 'each refusal is audited');
    const presence = await conn.request('presence.list', {});
    t.notMatch(JSON.stringify(presence), scraper.record.id, 'it never appeared in presence');
  });

  t.test('a collector that throws fails the scrape with a 500 that does not say why', async (t) => {
    const m = gw.telemetry.metrics;
    const original = m.scrape;
    m.scrape = () => Promise.reject(new Error('collector detail /home/secret-path'));
    t.teardown(() => {
      m.scrape = original;
    });
    const res = await scrape(gw, gw.adminToken);
    t.equal(res.status, 500);
    const body = await res.text();
    t.match(JSON.parse(body), { error: { code: 'internal', message: /could not be collected/ } });
    t.notMatch(body, /secret-path|collector detail/, 'the error message stays in the log');
  });

  t.test('a token with operator.metrics and another scope connects as that scope allows', async (t) => {
    const both = await gw.tokens.create({ scopes: ['operator.metrics', 'operator.read'], createdBy: 'test' });
    const c = await connect(gw, { token: both.token });
    t.teardown(() => c.conn.ws.close());
    t.match(await c.conn.request('run.list', {}), { ok: true });
  });

  t.test('after N tool calls the call counters, stage histograms and store counters moved by N', async (t) => {
    const N = 5;
    const before = await metrics(gw);
    for (let i = 0; i < N; i++) {
      const r = await conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: `secret-argument-${i} two` } });
      t.equal((r.result as { state: string }).state, 'succeeded');
    }
    const after = await metrics(gw);
    const moved = (series: string) => sample(after, series) - sample(before, series);
    t.equal(moved('tyrum_tool_calls_total{outcome="succeeded"}'), N, 'tool calls by outcome');
    for (const stage of ['policy', 'sandbox', 'commit', 'total']) {
      t.equal(moved(`tyrum_call_stage_duration_seconds_count{stage="${stage}",outcome="succeeded"}`), N, `one ${stage} observation per call`);
      t.ok(moved(`tyrum_call_stage_duration_seconds_sum{stage="${stage}",outcome="succeeded"}`) > 0, `${stage} time was measured`);
    }
    t.ok(moved('tyrum_store_commits_total') >= N, `at least one durable commit per call (${moved('tyrum_store_commits_total')})`);
    t.ok(moved('tyrum_store_units_committed_total') >= moved('tyrum_store_commits_total'), 'every commit carries at least one unit');
    if (gw.store.dialect === 'sqlite') t.ok(moved('tyrum_store_fdatasyncs_total') >= 1, 'the store synced the log (a real SQLite file)');
    else t.equal(moved('tyrum_store_fdatasyncs_total'), 0, 'no fdatasync by the store on PostgreSQL: the server makes COMMIT durable');
    t.equal(moved('tyrum_store_sync_duration_seconds_count'), moved('tyrum_store_fdatasyncs_total'), 'each fdatasync is timed once');
    if (gw.store.dialect === 'sqlite') t.equal(moved('tyrum_store_round_trips_total'), 0, 'no round trips on SQLite: statements run in-process');
    else t.ok(moved('tyrum_store_round_trips_total') >= 3 * N, `PostgreSQL round trips counted (${moved('tyrum_store_round_trips_total')} for ${N} calls)`);
    t.ok(moved('tyrum_store_commit_duration_seconds_count') >= N, 'each COMMIT is timed');
    t.ok(moved('tyrum_ws_frames_received_total') >= N && moved('tyrum_ws_frames_sent_total') >= N, 'frames counted both ways');
    t.equal(sample(after, 'tyrum_runs_active'), 0, 'no run is being driven once all answered');
    t.equal(sample(after, 'tyrum_runs_queued'), 0);
    t.equal(sample(after, 'tyrum_approvals_pending'), 0);
    t.notMatch(after, /secret-argument/, 'no argument value is exported');
  });

  t.test('the connections gauge follows a WebSocket connecting and disconnecting', async (t) => {
    const base = sample(await metrics(gw), 'tyrum_connections{role="client"}');
    t.ok(base >= 1, 'the test connection counts');
    const second = await connect(gw);
    t.equal(sample(await metrics(gw), 'tyrum_connections{role="client"}'), base + 1, 'one more client');
    second.conn.ws.close();
    await second.conn.closeCode();
    let now = base + 1;
    for (let i = 0; i < 50 && now !== base; i++) {
      await new Promise((r) => setTimeout(r, 20));
      now = sample(await metrics(gw), 'tyrum_connections{role="client"}');
    }
    t.equal(now, base, 'back once it closed');
    t.equal(sample(await metrics(gw), 'tyrum_connections{role="node"}'), 0, 'no node connected');
  });

  t.test('a sandbox timeout counts as a time budget hit and a failed call', async (t) => {
    await installEnabled(gw.plugins, await pluginDir(t.testdir(), { id: 'hostile', wat: 'hostile', tools: [{ id: 'spin' }], requests: { time: { timeout_ms: 200 } } }));
    const before = await metrics(gw);
    const r = await conn.request('tool.invoke', { tool_id: 'hostile.spin', args: {}, wait_ms: 20_000 }, 25_000);
    t.match(r.result, { state: 'failed', error: { code: 'TYRUM_ERR_SANDBOX_TIMEOUT' } });
    const after = await metrics(gw);
    t.equal(sample(after, 'tyrum_sandbox_budget_hits_total{kind="time"}') - sample(before, 'tyrum_sandbox_budget_hits_total{kind="time"}'), 1);
    t.equal(sample(after, 'tyrum_tool_calls_total{outcome="failed"}') - sample(before, 'tyrum_tool_calls_total{outcome="failed"}'), 1);
    const kinds = [...after.matchAll(/^tyrum_sandbox_budget_hits_total\{kind="([^"]+)"\}/gm)].map((m) => m[1]);
    t.same(kinds, [...BUDGET_KINDS], 'the kinds are a fixed set, each exported from the start');
  });

  t.test('a call the policy denies is counted as denied', async (t) => {
    gw.policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no-wc', decision: 'deny', match: { tools: ['text-utils.word_count'] } }] }, 'test');
    const before = await metrics(gw);
    const r = await conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'x' } });
    t.match(r.result, { state: 'failed', error: { code: 'TYRUM_ERR_POLICY_DENIED' } });
    const after = await metrics(gw);
    t.equal(sample(after, 'tyrum_tool_calls_total{outcome="denied"}') - sample(before, 'tyrum_tool_calls_total{outcome="denied"}'), 1);
    t.equal(sample(after, 'tyrum_call_stage_duration_seconds_count{stage="sandbox",outcome="denied"}'), 0, 'a denied call never reached the sandbox');
  });
});

t.test('log lines written during a call carry its run id, step and attempt', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const gw = await startTestGateway({ log: { level: 'info', stream: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, await pluginDir(t.testdir(), { id: 'chatty', wat: 'hostile', tools: [{ id: 'log_flood' }] }));
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const r = await conn.request('tool.invoke', { tool_id: 'chatty.log_flood', args: { note: 'do-not-log-me' } }, 20_000);
  const runId = (r.result as { run_id: string }).run_id;
  const plugin = lines.filter((l) => l.source === 'plugin' && l.tool_id === 'chatty.log_flood');
  t.ok(plugin.length > 0, `the plugin's lines were logged (${plugin.length})`);
  t.ok(plugin.every((l) => l.run_id === runId && l.step === 0 && l.attempt === 1), 'each names the run, step and attempt');
  t.notOk(plugin.some((l) => 'trace_id' in l), 'no trace id while tracing is off');
  t.notMatch(JSON.stringify(lines), /do-not-log-me/, 'arguments are never logged');
});
