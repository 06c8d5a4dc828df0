import t, { type Test } from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';
import { pluginDir, installEnabled, BUILT } from '../registry/helpers.js';

const CLI = { kind: 'cli', user: 'test' };

interface OtlpAttr {
  key: string;
  value: { stringValue?: string; intValue?: number | string; boolValue?: boolean };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: OtlpAttr[];
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  status?: { code?: number };
}

/** A local stand-in for an OTLP/HTTP collector: keeps every body POSTed to /v1/traces. */
async function collector(t: Test): Promise<{ url: string; bodies: string[]; spans(): OtlpSpan[]; resources(): OtlpAttr[][] }> {
  const bodies: string[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const parsed = () => bodies.map((b) => JSON.parse(b) as { resourceSpans: Array<{ resource: { attributes: OtlpAttr[] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    bodies,
    spans: () => parsed().flatMap((d) => d.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))),
    resources: () => parsed().flatMap((d) => d.resourceSpans.map((rs) => rs.resource.attributes)),
  };
}

const attrs = (s: OtlpSpan): Record<string, unknown> => Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : a.value.boolValue)]));

t.test('with an OTLP endpoint, a call through /mcp is one span under the incoming traceparent, with a child per stage', async (t) => {
  const otlp = await collector(t);
  const lines: Array<Record<string, unknown>> = [];
  const gw = await startTestGateway({
    config: { telemetry: { otlp_endpoint: otlp.url, service_name: 'tyrum-under-test' } },
    log: { level: 'info', stream: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } },
  });
  let closed = false;
  t.teardown(async () => {
    if (!closed) await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(BUILT.textUtils, CLI);
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI);
  await gw.plugins.enable('text-utils', CLI);
  await installEnabled(gw.plugins, await pluginDir(t.testdir(), { id: 'chatty', wat: 'hostile', tools: [{ id: 'log_flood' }] }));

  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parentId = '00f067aa0ba902b7';
  const client = new Client({ name: 'trace-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${gw.port}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.adminToken}`, traceparent: `00-${traceId}-${parentId}-01` } } }));
  const r = (await client.callTool({ name: 'text-utils.transform', arguments: { text: 'TOP-SECRET-ARGUMENT', op: 'lower' } })) as { isError?: boolean };
  t.notOk(r.isError);
  const chatty = (await client.callTool({ name: 'chatty.log_flood', arguments: {} })) as { isError?: boolean };
  t.equal(chatty.isError, true, 'the fixture writes raw bytes, not JSON, so the call fails; it logged first');
  await client.close();

  // A call over the WebSocket (no traceparent field in the protocol): a root span of its own.
  const { conn } = await connect(gw);
  const ws = await conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'ALSO-SECRET words' } });
  t.equal((ws.result as { state: string }).state, 'succeeded');
  conn.ws.close();

  await gw.close();
  closed = true;
  const spans = otlp.spans();
  t.ok(otlp.bodies.length >= 1, 'the exporter was flushed on close');

  const calls = spans.filter((s) => s.name === 'tyrum.call');
  t.equal(calls.length, 3, 'one call span per governed call');
  const mcpCall = calls.find((s) => attrs(s)['tyrum.tool_id'] === 'text-utils.transform')!;
  t.equal(mcpCall.traceId, traceId, 'the incoming trace id');
  t.equal(mcpCall.parentSpanId, parentId, 'the incoming span is the parent');
  t.match(attrs(mcpCall), { 'tyrum.tool_id': 'text-utils.transform', 'tyrum.run_id': /^run_/, 'tyrum.step': 0, 'tyrum.attempt': 1, 'tyrum.outcome': 'succeeded', 'tyrum.policy_decision': 'allow' });
  const children = spans.filter((s) => s.parentSpanId === mcpCall.spanId);
  t.same([...new Set(children.map((s) => s.name))].sort(), ['tyrum.commit', 'tyrum.policy', 'tyrum.sandbox'], 'a child span per stage');
  const commits = children.filter((s) => s.name === 'tyrum.commit').length;
  t.ok(commits === 1 || commits === 2, `one commit span per commit: a read-only first step commits once, or twice when it ran past the early answer (${commits})`);
  t.equal(children.length, 2 + commits, 'one policy and one sandbox span');
  for (const c of children) {
    t.equal(c.traceId, traceId);
    t.ok(BigInt(c.startTimeUnixNano) >= BigInt(mcpCall.startTimeUnixNano) && BigInt(c.endTimeUnixNano) <= BigInt(mcpCall.endTimeUnixNano), `${c.name} lies within the call`);
  }
  const wsCall = calls.find((s) => attrs(s)['tyrum.tool_id'] === 'text-utils.word_count')!;
  t.not(wsCall.traceId, traceId, 'a WebSocket call starts its own trace');
  t.notOk(wsCall.parentSpanId, 'as a root span');
  t.match(otlp.resources()[0], [{ key: 'service.name', value: { stringValue: 'tyrum-under-test' } }]);
  const all = otlp.bodies.join('\n');
  t.notMatch(all, /TOP-SECRET-ARGUMENT|ALSO-SECRET/, 'no argument value leaves in a span');

  const chattyCall = calls.find((s) => attrs(s)['tyrum.tool_id'] === 'chatty.log_flood')!;
  const plugin = lines.filter((l) => l.source === 'plugin' && l.tool_id === 'chatty.log_flood');
  t.ok(plugin.length > 0, 'the plugin logged');
  t.ok(plugin.every((l) => l.trace_id === chattyCall.traceId && l.span_id === chattyCall.spanId && l.run_id === attrs(chattyCall)['tyrum.run_id']), 'its log lines carry the trace and span ids of the call');
});

t.test('a malformed traceparent is ignored: the call gets a root span', async (t) => {
  const otlp = await collector(t);
  const gw = await startTestGateway({ config: { telemetry: { otlp_endpoint: otlp.url } } });
  t.teardown(() => removeHome(gw.home));
  await gw.plugins.install(BUILT.textUtils, CLI);
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI);
  await gw.plugins.enable('text-utils', CLI);
  const client = new Client({ name: 'trace-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${gw.port}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.adminToken}`, traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' } } }));
  await client.callTool({ name: 'text-utils.transform', arguments: { text: 'x', op: 'lower' } });
  await client.close();
  await gw.close();
  const call = otlp.spans().find((s) => s.name === 'tyrum.call')!;
  t.ok(call, 'the call was traced');
  t.notOk(call.parentSpanId, 'an all-zero trace id is not a parent');
  t.equal(attrs(call)['tyrum.outcome'], 'succeeded');
});

t.test('a bad telemetry section is refused with the config error', async (t) => {
  for (const telemetry of [{ otlp_endpoint: 'ftp://x/v1/traces' }, { otlp_endpoint: 'http://user:pw@127.0.0.1:4318/v1/traces' }, { sample_ratio: 2 }, { exporter: 'zipkin' }]) {
    await t.rejects(startTestGateway({ config: { telemetry } }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /telemetry/ }, JSON.stringify(telemetry));
  }
});
