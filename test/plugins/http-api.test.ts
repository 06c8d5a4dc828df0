// http-api, built from source (plugins/http-api) and run in a real SandboxPool against a local HTTP
// server. The egress handler here is a minimal stand-in for the gateway's checked egress: it allows
// exactly the effective rights (manifests/capabilities.ts) of a test variant of the manifest, and fills
// `{{secret:NAME}}` header templates only for hosts the secret is bound to. The plugin must send the
// template, never a value; the server must receive the value; no output may contain it.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t from 'tap';
import { validate } from '../../core/protocol/validate.js';
import { effectiveRights, impliedRisks } from '../../manifests/capabilities.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxError, sandboxReason, type EgressHandler, type EgressRequest } from '../../sandbox/index.js';
import { dec, enc, loadBuilt, pluginAjv, readBuilt, readSourceManifest, sha256, toolSchemas } from './helpers.js';

const plugin = readBuilt('http-api');
const schemas = toolSchemas(plugin.manifest);
const tool = plugin.manifest.contributes.tools[0];
const CANARY = `canary-${randomBytes(24).toString('hex')}`;

// --- the API ---------------------------------------------------------------------------------------

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}
const seen: Seen[] = [];
const DEEP = 600;
/** What /v1/fuzz answers (set by the test before each call). */
let fuzzBody: Buffer = Buffer.alloc(0);
const server = createServer((req, res) => {
  seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
  const url = new URL(req.url ?? '/', 'http://x');
  const json = (status: number, body: string, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };
  switch (url.pathname) {
    case '/v1/items':
      return json(200, JSON.stringify({ items: [{ id: 1, name: 'Crème brûlée 😀 你好' }], limit: Number(url.searchParams.get('limit')), authorized: req.headers.authorization === `Bearer ${CANARY}` }));
    case '/v1/big-number':
      return json(200, '{"id": 12345678901234567890, "ratio": 1.10, "nested": [ {"a": null} ]}');
    case '/v1/text':
      return json(200, 'hello, not JSON', 'text/plain');
    case '/v1/almost':
      return json(200, '{"a": 1,}');
    case '/v1/empty':
      res.writeHead(204);
      return res.end();
    case '/v1/bom':
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"bom": true}')]));
    case '/v1/deep':
      return json(200, '['.repeat(DEEP) + ']'.repeat(DEEP));
    case '/v1/scalar':
      return json(200, ' "just a string" ');
    case '/v1/fuzz':
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(fuzzBody);
    case '/v1/bad-utf8':
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(Buffer.from([0x22, 0xc3, 0x28, 0x22]));
    default:
      return json(404, JSON.stringify({ error: 'not found', path: url.pathname }));
  }
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;
t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));

// --- the manifest variant for this test and the egress stand-in ------------------------------------

/** The shipped manifest asks for operator-chosen hosts; the operator's grant names the test server. */
const testManifest: PluginManifest = plugin.manifest;
const rights = effectiveRights(testManifest, {
  egress: [{ host: '127.0.0.1', scheme: 'http', port, methods: ['GET', 'POST'] }],
  secrets: [{ name: 'API_TOKEN', destinations: ['127.0.0.1'] }],
  accept_risks: ['network', 'secrets'],
});
const SECRET_VALUES: Record<string, string> = { API_TOKEN: CANARY, OTHER_TOKEN: `other-${CANARY}` };
const TEMPLATE = /\{\{secret:([A-Z][A-Z0-9_]{0,63})\}\}/g;

const egressSeen: EgressRequest[] = [];
const egress: EgressHandler = async (req) => {
  egressSeen.push(req);
  const url = new URL(req.url);
  const scheme = url.protocol.slice(0, -1);
  const portNum = Number(url.port || (scheme === 'https' ? 443 : 80));
  const rule = rights.egress.find((r) => r.host === url.hostname && r.port === portNum && r.scheme === scheme);
  if (rule === undefined || !rule.methods.includes(req.method)) {
    throw sandboxError('capability_denied', `egress to ${req.method} ${scheme}://${url.host} is not granted`, { host: url.hostname });
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    headers[k] = v.replace(TEMPLATE, (_m, name: string) => {
      const bound = rights.secrets.find((s) => s.name === name);
      if (bound === undefined || !bound.destinations.includes(url.hostname)) {
        throw sandboxError('capability_denied', `secret handle ${name} may not be sent to ${url.hostname}`, { secret: name });
      }
      return SECRET_VALUES[name] ?? '';
    });
  }
  const res = await fetch(req.url, { method: req.method, headers, redirect: 'manual', signal: req.signal });
  const body = new Uint8Array(await res.arrayBuffer());
  if (body.byteLength > req.maxResponseBytes) throw sandboxError('budget_exceeded', 'response too large', { budget: 'egress_bytes' });
  return { status: res.status, headers: Object.fromEntries(res.headers), body };
};

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const BASE = `http://127.0.0.1:${port}/v1`;
const ready = loadBuilt(pool, 'http-api', plugin, { config: { base_url: BASE }, hostApi: { egress } });

type Json = Record<string, unknown>;

async function getJson(path: string, key = 'http-api'): Promise<{ out: Json; raw: string }> {
  const s = schemas.get('get_json');
  if (!s?.input({ path })) throw new Error(`test bug: ${path} does not satisfy the input schema`);
  await ready;
  const r = await pool.call(key, 'get_json', enc({ path }));
  const raw = dec(r.output);
  const out = JSON.parse(raw) as Json;
  if (!s.output(out)) throw new Error(`output violates the schema: ${JSON.stringify(s.output.errors)}`);
  for (const l of r.logs) if (l.message.includes(CANARY)) throw new Error('a log line holds the secret');
  return { out, raw };
}

async function failure(input: unknown, key = 'http-api'): Promise<Error> {
  await ready;
  return pool.call(key, 'get_json', enc(input)).then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e as Error,
  );
}

// --- tests -----------------------------------------------------------------------------------------

t.test('the manifest asks for exactly what the tool needs, and declares the implied risks', async (t) => {
  t.same(validate(PluginManifest, plugin.manifest), [], 'build/tyrum.plugin.json satisfies the manifest contract');
  t.equal(plugin.manifest.wasm.sha256, sha256(plugin.wasm), 'the manifest digest is the digest of build/plugin.wasm');
  const source = readSourceManifest('http-api');
  t.same({ ...plugin.manifest, wasm: source.wasm }, source, 'the build manifest is the source manifest with only wasm changed');
  t.same(source.wasm, { path: 'build/plugin.wasm', sha256: '0'.repeat(64) });
  t.same(plugin.manifest.requests, {
    egress: [{ host: '*', methods: ['GET'] }],
    secrets: [{ name: 'API_TOKEN', destinations: ['*'], purpose: plugin.manifest.requests?.secrets?.[0]?.purpose }],
  });
  t.same([...(plugin.manifest.risk ?? [])].sort(), ['network', 'secrets']);
  t.same(impliedRisks(plugin.manifest).sort(), [...(plugin.manifest.risk ?? [])].sort(), 'every implied risk is declared, and only those');
  t.equal(tool?.effect, 'read_only');
  t.same(validate(PluginManifest, testManifest), [], 'the test variant is a valid manifest too');
  t.same(rights.missing_risks, [], 'the test grant accepts its risks');
});

t.test('config_schema: base_url required, token_handle a secret handle name defaulting to API_TOKEN', async (t) => {
  const ajv = pluginAjv();
  const check = ajv.compile(plugin.manifest.config_schema ?? {});
  const cfg: Json = { base_url: 'https://api.example.com/v1' };
  t.ok(check(cfg));
  t.same(cfg, { base_url: 'https://api.example.com/v1', token_handle: 'API_TOKEN' }, 'the default handle is filled in');
  const props = (plugin.manifest.config_schema as { properties: Record<string, Json> }).properties;
  t.equal(props.token_handle?.['x-tyrum-secret'], true, 'token_handle is marked as a secret field');
  t.equal(props.base_url?.['x-tyrum-secret'], undefined);
  for (const bad of [{}, { base_url: 'ftp://x' }, { base_url: 'https://user@api.example.com' }, { base_url: 'https://api.example.com/?q=1' }, { base_url: 'https://a', token_handle: 'lower' }, { base_url: 'https://a', extra: 1 }, { base_url: 'https://a', token_handle: 'X}}{{secret:Y' }]) {
    t.notOk(check(bad), `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('the module passes the sandbox load checks: Extism kernel (with http_request) and env.abort only', async (t) => {
  const info = await ready;
  for (const imp of info.imports) t.ok(imp.startsWith('extism:host/env.') || imp === 'env.abort', `allowed import ${imp}`);
  t.ok(info.imports.includes('extism:host/env.http_request'));
  t.ok(info.imports.includes('extism:host/env.config_get'));
});

t.test('GET with the secret handle: the server gets the token, the plugin and its output never do', async (t) => {
  const before = seen.length;
  const { out, raw } = await getJson('/items?limit=2');
  t.same(out, { status: 200, body: { items: [{ id: 1, name: 'Crème brûlée 😀 你好' }], limit: 2, authorized: true } });
  const req = seen[before];
  t.equal(seen.length, before + 1, 'one request');
  t.equal(req?.method, 'GET');
  t.equal(req?.url, '/v1/items?limit=2', 'base_url + path');
  t.equal(req?.headers.authorization, `Bearer ${CANARY}`, 'the server received the secret value');
  t.equal(req?.headers.accept, 'application/json');
  const asked = egressSeen[egressSeen.length - 1];
  t.equal(asked?.headers['Authorization'], 'Bearer {{secret:API_TOKEN}}', 'the plugin sent the template, never a value');
  t.equal(asked?.url, `${BASE}/items?limit=2`);
  t.notOk(raw.includes(CANARY), 'the output does not contain the secret');
  t.notOk(JSON.stringify(egressSeen).includes(CANARY), 'nothing the plugin handed to egress contains it');
});

t.test('bodies: JSON passed through exactly, null when empty or not JSON; non-2xx statuses are results', async (t) => {
  const big = await getJson('/big-number');
  t.equal(big.raw, '{"status":200,"body":{"id": 12345678901234567890, "ratio": 1.10, "nested": [ {"a": null} ]}}', 'byte for byte: big integers are not rounded');
  t.same((await getJson('/text')).out, { status: 200, body: null });
  t.same((await getJson('/almost')).out, { status: 200, body: null }, 'a trailing comma is not JSON');
  t.same((await getJson('/empty')).out, { status: 204, body: null });
  t.same((await getJson('/bom')).out, { status: 200, body: { bom: true } }, 'a UTF-8 byte order mark is dropped');
  t.same((await getJson('/scalar')).out, { status: 200, body: 'just a string' });
  t.same((await getJson('/bad-utf8')).out, { status: 200, body: null }, 'invalid UTF-8 is not JSON');
  t.same((await getJson('/deep')).out, { status: 200, body: null }, `nesting deeper than 512 (here ${DEEP}) is reported as null`);
  t.same((await getJson('/nowhere')).out, { status: 404, body: { error: 'not found', path: '/v1/nowhere' } });
  t.same((await getJson('/items?limit=1&q=caf%C3%A9')).out.status, 200, 'query strings pass');
});

/** What the body should become: strict UTF-8 and JSON.parse, as the gateway will read the output. */
function referenceBody(bytes: Buffer): unknown {
  let b = bytes;
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b);
  } catch {
    return null;
  }
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

async function bodyOf(bytes: Buffer): Promise<unknown> {
  fuzzBody = bytes;
  return (await getJson('/fuzz')).out.body;
}

t.test('the body parser agrees with JSON.parse on valid, broken and random bodies', async (t) => {
  const edge = ['0', '-0', '01', '-', '1.', '.5', '1e', '1e+', '+1', '1E-2', '0.0e-0', '[1,]', '{"a":1,}', '[,]', 'nul', 'true false', '"\\u12"', '"\\ud800"', '"\\t\\/"', '"tab\there"', '{"a" 1}', '{1:2}', '[]', '{}', '""', ' \t\n[ ] \r\n'];
  for (const e of edge) t.ok(isDeepStrictEqual(await bodyOf(Buffer.from(e)), referenceBody(Buffer.from(e))), `body ${JSON.stringify(e)}`);
  const inserts = ['', ',', '}', ']', '"', '\\', '\u0000', 'x', '0', '-', '.', 'e', ' ', '\ud800', '\u00e9', '😀'];
  const mutated = fc.tuple(fc.json({ maxDepth: 3 }), fc.nat(), fc.constantFrom(...inserts), fc.nat({ max: 3 })).map(([s, at, ins, del]) => {
    const i = at % (s.length + 1);
    return Buffer.from(s.slice(0, i) + ins + s.slice(i + del));
  });
  const bodies = fc.oneof(fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s)), mutated, fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)));
  await fc.assert(
    fc.asyncProperty(bodies, async (b) => isDeepStrictEqual(await bodyOf(b), referenceBody(b))),
    { numRuns: 400 },
  );
});

t.test('the path can only extend base_url: host switching and malformed paths are refused before any request', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ path: 'items' }, /"path" must start with "\/"/],
    [{ path: '' }, /"path" must start with "\/"/],
    [{ path: '//evil.example/x' }, /"path" must not start with "\/\/"/],
    [{ path: '/redirect?to=http://evil.example/' }, /"path" must not contain ":\/\/"/],
    [{ path: '/a b' }, /must not contain white space, control characters or backslashes/],
    [{ path: '/a\r\nX-Injected: 1' }, /must not contain white space/],
    [{ path: '/\\evil.example' }, /backslashes/],
    [{ path: `/${'a'.repeat(2048)}` }, /"path" is longer than 2048 characters/],
    [{ path: 5 }, /"path" must be a string, got a number/],
    [{}, /"path" is required/],
    [{ path: '/x', url: 'http://evil.example' }, /unknown key "url" \(allowed: path\)/],
  ];
  const requests = seen.length;
  const egressCalls = egressSeen.length;
  for (const [input, message] of cases) {
    const e = await failure(input);
    t.equal(sandboxReason(e), 'plugin_error', JSON.stringify(input).slice(0, 60));
    t.match(e.message, /^plugin reported an error: invalid input: /);
    t.match(e.message, message);
    t.notOk(schemas.get('get_json')?.input(input), 'the input schema refuses it too');
  }
  t.equal(egressSeen.length, egressCalls, 'the plugin asked for no request');
  t.equal(seen.length, requests, 'the server saw none');
});

t.test('configuration problems are plugin errors naming the setting; the token never appears', async (t) => {
  const load = (key: string, config: Record<string, string>) => loadBuilt(pool, key, plugin, { config, hostApi: { egress } });
  await load('no-base', {});
  t.match((await failure({ path: '/items' }, 'no-base')).message, /plugin reported an error: configuration: base_url is not set/);
  await load('bad-base', { base_url: 'file:///etc' });
  t.match((await failure({ path: '/items' }, 'bad-base')).message, /configuration: base_url must start with https:\/\/ or http:\/\//);
  await load('userinfo', { base_url: 'http://user@127.0.0.1' });
  t.match((await failure({ path: '/items' }, 'userinfo')).message, /configuration: base_url must not contain user info/);
  await load('bad-handle', { base_url: BASE, token_handle: 'X}}{{secret:OTHER_TOKEN' });
  t.match((await failure({ path: '/items' }, 'bad-handle')).message, /configuration: token_handle must be a secret handle name/);

  // A trailing slash on base_url does not double the slash.
  await load('slash', { base_url: `${BASE}/`, token_handle: 'API_TOKEN' });
  const before = seen.length;
  t.same((await getJson('/items?limit=3', 'slash')).out.status, 200);
  t.equal(seen[before]?.url, '/v1/items?limit=3');
});

t.test('what egress refuses aborts the call with capability_denied, and no secret leaves', async (t) => {
  const requests = seen.length;
  // A host not granted (base_url is the operator's config; the grant is the other key).
  await loadBuilt(pool, 'other-host', plugin, { config: { base_url: `http://127.0.0.2:${port}/v1` }, hostApi: { egress } });
  const e1 = await failure({ path: '/items' }, 'other-host');
  t.equal(sandboxReason(e1), 'capability_denied');
  t.match(e1.message, 'egress to GET http://127.0.0.2');
  // A handle that is not bound to this host.
  await loadBuilt(pool, 'other-handle', plugin, { config: { base_url: BASE, token_handle: 'OTHER_TOKEN' }, hostApi: { egress } });
  const e2 = await failure({ path: '/items' }, 'other-handle');
  t.equal(sandboxReason(e2), 'capability_denied');
  t.match(e2.message, 'secret handle OTHER_TOKEN may not be sent to 127.0.0.1');
  // No egress granted at all.
  await loadBuilt(pool, 'no-egress', plugin, { config: { base_url: BASE } });
  const e3 = await failure({ path: '/items' }, 'no-egress');
  t.equal(sandboxReason(e3), 'capability_denied');
  t.match(e3.message, 'not granted HTTP egress');
  t.equal(seen.length, requests, 'the server saw none of these');
  for (const e of [e1, e2, e3]) t.notOk(JSON.stringify({ m: e.message, d: (e as { details?: unknown }).details }).includes(CANARY), 'no error holds the secret');
  t.same((await getJson('/items?limit=1')).out.status, 200, 'the granted plugin is unaffected');
});

t.test('many calls: responses are released between calls (memory stable)', async (t) => {
  const pages: number[] = [];
  for (let i = 0; i < 150; i++) {
    const r = await pool.call('http-api', 'get_json', enc({ path: '/items?limit=' + i }));
    pages.push(r.usage.mem_pages_peak ?? -1);
  }
  t.equal(Math.max(...pages.slice(10)), Math.min(...pages.slice(10)), `memory stable at ${pages[pages.length - 1]} pages`);
});
