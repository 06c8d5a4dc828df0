import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import wabtInit from 'wabt';
import { runPluginTests, formatReport, type HarnessReport } from '../../../sdk/author/harness.js';
import { pluginTest } from '../../../sdk/author/cli/test-pack.js';
import { pluginDir, BUILT } from '../../core/registry/helpers.js';

const FAKE = 'fake-token-0123456789';

let wabt: ReturnType<typeof wabtInit> | undefined;
async function wat(text: string): Promise<Buffer> {
  const w = await (wabt ??= wabtInit());
  const mod = w.parseWat('inline.wat', text);
  try {
    mod.validate();
    return Buffer.from(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** Copy guest memory [ptr, ptr+len) into a new kernel block. */
const COPY = `
  (func $copy (param $ptr i32) (param $len i32) (result i64)
    (local $k i64) (local $i i32)
    (local.set $k (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (call $store_u8 (i64.add (local.get $k) (i64.extend_i32_u (local.get $i))) (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $k))`;

/** kv_get("note"): the stored value as the output, or {"missing":true}. */
const KV_WAT = `(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "tyrum:host/v1" "kv_get" (func $kv_get (param i64) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "note")
  (data (i32.const 16) "{\\"missing\\":true}")
  ${COPY}
  (func (export "get") (result i32)
    (local $v i64)
    (local.set $v (call $kv_get (call $copy (i32.const 0) (i32.const 4))))
    (if (i64.eqz (local.get $v)) (then (local.set $v (call $copy (i32.const 16) (i32.const 16)))))
    (call $output_set (local.get $v) (call $length (local.get $v)))
    (i32.const 0)))`;

/** Reports an error through error_set. */
const FAIL_WAT = `(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "boom: bad thing")
  ${COPY}
  (func (export "fail") (result i32)
    (call $error_set (call $copy (i32.const 0) (i32.const 15)))
    (i32.const 1)))`;

/** Outputs its input (the kernel's input block). */
const ECHO_WAT = `(module
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "echo") (result i32)
    (call $output_set (call $input_offset) (call $input_length))
    (i32.const 0)))`;

const SPIN_WAT = `(module (memory (export "memory") 1) (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0)))`;

function writeTests(dir: string, name: string, cases: unknown): void {
  mkdirSync(join(dir, 'tests'), { recursive: true });
  writeFileSync(join(dir, 'tests', `${name}.test.json`), JSON.stringify(cases, null, 2));
}

function byName(r: HarnessReport, name: string) {
  const c = r.cases.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  return c;
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) }, out, err };
}

t.test('expect, expect_error, input and output contracts, with budget use printed', async (t) => {
  const dir = await pluginDir(t.testdir(), {
    id: 'echoes',
    wat: await wat(ECHO_WAT),
    tools: [
      { id: 'echo', input: { type: 'object', properties: { a: { type: 'integer' } }, additionalProperties: false } },
      { id: 'strict_echo', export: 'echo', output: { type: 'object', required: ['ok'] } },
    ],
  });
  writeTests(dir, 'basic', [
    { name: 'echoes its input', tool: 'echo', input: { a: 1 }, expect: { a: 1 } },
    { name: 'wrong expectation', tool: 'echo', input: { a: 1 }, expect: { a: 2 } },
    { name: 'bad input is refused', tool: 'echo', input: { a: 'x' }, expect_error: 'arguments do not match the input schema of echoes.echo' },
    { name: 'bad input unexpected', tool: 'echo', input: { b: 1 } },
    { name: 'output breaks its schema', tool: 'strict_echo', input: { a: 1 } },
    { name: 'full tool id works', tool: 'echoes.echo', input: {}, expect: {} },
    { name: 'unknown tool', tool: 'nope', input: {} },
    { name: 'typo in a case', tool: 'echo', input: {}, expekt: {} },
  ]);
  const r = await runPluginTests(dir);
  t.equal(r.cases.length, 8);
  t.same(
    r.cases.map((c) => [c.name, c.ok]),
    [
      ['echoes its input', true],
      ['wrong expectation', false],
      ['bad input is refused', true],
      ['bad input unexpected', false],
      ['output breaks its schema', false],
      ['full tool id works', true],
      ['unknown tool', false],
      ['typo in a case', false],
    ],
  );
  t.match(byName(r, 'wrong expectation').problems[0], /^output differs from expect at \/a: expected 2, got 1\n/);
  t.match(byName(r, 'bad input unexpected').problems[0], /^TYRUM_ERR_INVALID_REQUEST: arguments do not match the input schema of echoes\.echo: /);
  t.match(byName(r, 'output breaks its schema').problems[0], /echoes\.strict_echo returned output that does not match its output schema: .*ok/);
  t.match(byName(r, 'unknown tool').problems[0], /no tool "nope" in plugin echoes \(tools: echo, strict_echo\)/);
  t.match(byName(r, 'typo in a case').problems[0], /not a valid test case: .*expekt/);
  const ok = byName(r, 'echoes its input');
  t.ok(ok.usage && ok.usage.host_calls !== null && ok.usage.mem_pages_peak === 1 && ok.usage.alloc_bytes !== null && ok.usage.egress_bytes === 0, 'usage reported');
  t.same(r.limits, { wall_ms: 5000, memory_pages: 256, host_calls: 10000, alloc_bytes: 32 * 1024 * 1024, egress_bytes: 8 * 1024 * 1024, output_bytes: 4 * 1024 * 1024 });
  t.equal(r.passed, 3);
  t.equal(r.failed, 5);

  const lines = formatReport(r);
  const line = lines.find((l) => l.includes('echoes its input'))!;
  t.match(line, /^✓ echoes its input \[tests\/basic\.test\.json #1 echo\] {2}wall [\d.]+\/5000 ms · mem 1\/256 pages · host calls \d+\/10000 · alloc \d+\/33554432 B · egress 0\/8388608 B$/);
  t.match(lines.find((l) => l.includes('wrong expectation'))!, /^✗ wrong expectation/);
  t.ok(lines.includes('      expected {"a":2}') && lines.includes('      got      {"a":1}'), 'expected and got are shown');
  t.equal(lines.at(-1), '3 passed, 5 failed');

  const cli = capture();
  t.equal(await pluginTest([dir], cli.io), 1, 'exit 1 on any failure');
  t.equal(cli.out.at(-1), '3 passed, 5 failed');
  const json = capture();
  t.equal(await pluginTest([dir, '--json'], json.io), 1);
  const parsed = JSON.parse(json.out.join('\n')) as HarnessReport;
  t.equal(parsed.passed, 3);
});

t.test("a tool's declared input and output encodings are applied as the gateway applies them", async (t) => {
  const text = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
  const dir = await pluginDir(t.testdir(), {
    id: 'vowels',
    wat: 'count-vowels',
    tools: [
      { id: 'count_vowels', input: text, io: { input: { encoding: 'text', field: 'text' } } },
      { id: 'raw', export: 'count_vowels', input: text, output: text, io: { input: { encoding: 'text', field: 'text' }, output: { encoding: 'text', field: 'text' } } },
    ],
  });
  writeTests(dir, 'encodings', [
    { name: 'raw text in', tool: 'count_vowels', input: { text: 'Hello, World!' }, expect: { count: 3, total: 3, vowels: 'aeiouAEIOU' } },
    { name: 'raw text out', tool: 'raw', input: { text: 'aa' }, expect: { text: '{"count":2,"total":2,"vowels":"aeiouAEIOU"}' } },
  ]);
  const r = await runPluginTests(dir);
  t.same(r.cases.map((c) => [c.name, c.ok, c.problems]), [['raw text in', true, []], ['raw text out', true, []]]);
});

t.test('an export that sets no output is the result null, described as the gateway describes it', async (t) => {
  const dir = await pluginDir(t.testdir(), {
    id: 'quiet',
    wat: 'raw-io',
    tools: [
      { id: 'nothing', output: {} },
      { id: 'nothing_object', export: 'nothing', output: { type: 'object' } },
    ],
  });
  writeTests(dir, 'quiet', [
    { name: 'null result', tool: 'nothing', input: {}, expect: null },
    { name: 'schema refuses null', tool: 'nothing_object', input: {}, expect_error: 'quiet.nothing_object returned no output (the result null), which its output schema does not accept' },
  ]);
  const r = await runPluginTests(dir);
  t.same(r.cases.map((c) => [c.name, c.ok, c.problems]), [['null result', true, []], ['schema refuses null', true, []]]);
});

t.test('a plugin error matches expect_error by substring; config is checked against config_schema', async (t) => {
  const dir = await pluginDir(t.testdir(), {
    id: 'failing',
    wat: await wat(FAIL_WAT),
    tools: [{ id: 'fail' }],
    config_schema: { type: 'object', properties: { mode: { type: 'string', enum: ['a', 'b'], default: 'a' } } },
  });
  writeTests(dir, 'errors', [
    { name: 'expected failure', tool: 'fail', input: {}, expect_error: 'boom: bad' },
    { name: 'different error', tool: 'fail', input: {}, expect_error: 'something else' },
    { name: 'unexpected failure', tool: 'fail', input: {} },
    { name: 'bad config', tool: 'fail', input: {}, config: { mode: 'c' }, expect_error: 'config for failing is invalid' },
  ]);
  const r = await runPluginTests(dir);
  t.same(r.cases.map((c) => c.ok), [true, false, false, true]);
  t.match(byName(r, 'different error').problems[0], /expected an error containing "something else", got: .*boom: bad thing/);
  t.match(byName(r, 'unexpected failure').problems[0], /boom: bad thing/);
  t.equal(byName(r, 'bad config').usage, null, 'a config refusal never reaches the sandbox');
});

t.test('seeded key-value state is what the plugin reads', async (t) => {
  const dir = await pluginDir(t.testdir(), { id: 'notes', wat: await wat(KV_WAT), tools: [{ id: 'get' }], requests: { kv: { quota_bytes: 64 } }, risk: ['storage'] });
  writeTests(dir, 'kv', [
    { name: 'seeded', tool: 'get', input: {}, kv: { note: '{"text":"hi"}' }, expect: { text: 'hi' } },
    { name: 'empty', tool: 'get', input: {}, expect: { missing: true } },
    { name: 'state does not leak between cases', tool: 'get', input: {}, expect: { missing: true } },
    { name: 'over quota', tool: 'get', input: {}, kv: { note: 'x'.repeat(100) } },
  ]);
  const r = await runPluginTests(dir);
  t.same(r.cases.map((c) => c.ok), [true, true, true, false]);
  t.match(byName(r, 'over quota').problems[0], /kv: the seeded state is 104 bytes, above the plugin's quota of 64 bytes/);

  const noKv = await pluginDir(t.testdir(), { id: 'plain', wat: 'echo', tools: [{ id: 'echo' }] });
  writeTests(noKv, 'kv', [{ name: 'kv without a request', tool: 'echo', input: {}, kv: { a: 'b' } }]);
  const r2 = await runPluginTests(noKv);
  t.match(r2.cases[0]!.problems[0], /does not request key-value storage/);
});

t.test('recorded HTTP: secrets only to their destinations, redacted everywhere; unexpected requests fail', async (t) => {
  const dir = await pluginDir(t.testdir(), {
    id: 'api',
    wat: 'http',
    tools: [{ id: 'fetch' }],
    requests: { egress: [{ host: 'api.example.test' }, { host: 'other.example.test' }], secrets: [{ name: 'TOKEN', destinations: ['api.example.test'] }] },
    risk: ['network', 'secrets'],
  });
  const auth = { authorization: 'Bearer {{secret:TOKEN}}' };
  const secrets = { TOKEN: FAKE };
  writeTests(dir, 'http', [
    {
      name: 'secret injected for its destination',
      tool: 'fetch',
      input: { url: 'https://api.example.test/user', headers: auth },
      secrets,
      http: [{ url: 'https://api.example.test/user', status: 200, body: { login: 'octo', echoed: `token ${FAKE}` }, expect_headers: { Authorization: 'Bearer {{secret:TOKEN}}' } }],
      expect: { login: 'octo', echoed: 'token [REDACTED:TOKEN]' },
    },
    {
      name: 'secret refused for another host',
      tool: 'fetch',
      input: { url: 'https://other.example.test/user', headers: auth },
      secrets,
      http: [{ url: 'https://other.example.test/user', status: 200, body: {} }],
      expect_error: 'secret handle TOKEN may not be sent to https://other.example.test:443',
    },
    {
      name: 'header mismatch is shown redacted',
      tool: 'fetch',
      input: { url: 'https://api.example.test/user', headers: auth },
      secrets,
      http: [{ url: 'https://api.example.test/user', status: 200, body: {}, expect_headers: { authorization: 'token {{secret:TOKEN}}' } }],
    },
    {
      name: 'no recording',
      tool: 'fetch',
      input: { url: 'https://api.example.test/nope' },
      http: [{ url: 'https://api.example.test/user', status: 200, body: {} }],
    },
    { name: 'host not granted', tool: 'fetch', input: { url: 'https://evil.example.test/' }, expect_error: 'egress to https://evil.example.test:443 is not granted to this plugin' },
    { name: 'output echoes the fake secret', tool: 'fetch', input: { url: 'https://api.example.test/x', headers: { 'x-debug': FAKE } }, secrets, http: [{ url: 'https://api.example.test/x', status: 200, body: {} }], expect: { nope: FAKE } },
  ]);
  const r = await runPluginTests(dir);
  t.same(
    r.cases.map((c) => [c.name, c.ok]),
    [
      ['secret injected for its destination', true],
      ['secret refused for another host', true],
      ['header mismatch is shown redacted', false],
      ['no recording', false],
      ['host not granted', true],
      ['output echoes the fake secret', false],
    ],
  );
  const first = byName(r, 'secret injected for its destination');
  t.same(first.requests, [{ method: 'GET', url: 'https://api.example.test/user', status: 200 }]);
  t.ok(first.usage!.egress_bytes! > 0, 'egress bytes counted');
  t.match(byName(r, 'header mismatch is shown redacted').problems[0], /header authorization expected "token \[REDACTED:.*\]", sent "Bearer \[REDACTED:.*\]"/);
  t.same(byName(r, 'no recording').problems, ['unexpected request GET https://api.example.test/nope']);
  const printed = [...formatReport(r), JSON.stringify(r)].join('\n');
  t.notOk(printed.includes(FAKE), 'the fake secret value never appears in the report');
  t.ok(printed.includes('unexpected request GET https://api.example.test/nope'));
  const cli = capture();
  t.equal(await pluginTest([dir], cli.io), 1);
  t.notOk([...cli.out, ...cli.err].join('\n').includes(FAKE));
  t.equal(cli.out.at(-1), '3 passed, 3 failed');
});

t.test('a "*" egress request is granted the recorded hosts, as an operator would', async (t) => {
  const dir = await pluginDir(t.testdir(), {
    id: 'anyhost',
    wat: 'http',
    tools: [{ id: 'fetch' }],
    requests: { egress: [{ host: '*' }], secrets: [{ name: 'KEY', destinations: ['*'] }] },
    risk: ['network', 'secrets'],
  });
  writeTests(dir, 'any', [
    {
      name: 'operator host',
      tool: 'fetch',
      input: { url: 'https://svc.internal.test/v1', headers: { 'x-key': '{{secret:KEY}}' } },
      secrets: { KEY: 'key-value-42' },
      http: [{ url: 'https://svc.internal.test/v1', status: 200, body: { ok: true }, expect_headers: { 'x-key': '{{secret:KEY}}' } }],
      expect: { ok: true },
    },
  ]);
  const r = await runPluginTests(dir);
  t.ok(r.cases[0]!.ok, r.cases[0]!.problems.join('; '));
});

t.test('secrets are bound to origins in the harness as at the gateway: a requested host is https:443; a recorded plain-http origin is granted as that origin', async (t) => {
  const fixed = await pluginDir(t.testdir(), {
    id: 'fixedhost',
    wat: 'http',
    tools: [{ id: 'fetch' }],
    requests: { egress: [{ host: 'api.example.test', scheme: 'http' }, { host: 'api.example.test' }, { host: 'api.example.test', port: 8443 }], secrets: [{ name: 'TOKEN', destinations: ['api.example.test'] }] },
    risk: ['network', 'secrets'],
  });
  const TOKEN = { TOKEN: 'fake-token-123' };
  const auth = { authorization: 'Bearer {{secret:TOKEN}}' };
  writeTests(fixed, 'plain', [
    {
      name: 'no secret over plain http to a bare-host destination',
      tool: 'fetch',
      input: { url: 'http://api.example.test/user', headers: auth },
      secrets: TOKEN,
      http: [{ url: 'http://api.example.test/user', status: 200, body: {} }],
      expect_error: 'secret handle TOKEN may not be sent to http://api.example.test:80',
    },
    {
      name: 'redirect to another port with the secret',
      tool: 'fetch',
      input: { url: 'https://api.example.test/start', headers: auth },
      secrets: TOKEN,
      http: [
        { url: 'https://api.example.test/start', status: 302, headers: { location: 'https://api.example.test:8443/next' } },
        { url: 'https://api.example.test:8443/next', status: 200, body: { ok: true } },
      ],
      expect_error: 'a redirect to https://api.example.test:8443 would carry secret handle TOKEN',
    },
  ]);
  const r1 = await runPluginTests(fixed);
  t.same(
    r1.cases.map((c) => [c.name, c.ok, c.problems.join('; ')]),
    [
      ['no secret over plain http to a bare-host destination', true, ''],
      ['redirect to another port with the secret', true, ''],
    ],
  );

  const wild = await pluginDir(t.testdir(), {
    id: 'localapi',
    wat: 'http',
    tools: [{ id: 'fetch' }],
    requests: { egress: [{ host: '*' }], secrets: [{ name: 'KEY', destinations: ['*'] }] },
    risk: ['network', 'secrets'],
  });
  writeTests(wild, 'local', [
    {
      name: 'recorded http origin',
      tool: 'fetch',
      input: { url: 'http://local.test:8080/v1', headers: { 'x-key': '{{secret:KEY}}' } },
      secrets: { KEY: 'key-value-42' },
      http: [{ url: 'http://local.test:8080/v1', status: 200, body: { ok: true }, expect_headers: { 'x-key': '{{secret:KEY}}' } }],
      expect: { ok: true },
    },
  ]);
  const r2 = await runPluginTests(wild);
  t.ok(r2.cases[0]!.ok, r2.cases[0]!.problems.join('; '));
});

t.test("HTTP goes through the gateway's egress handler: no egress granted is no_rights, and its request limits apply", async (t) => {
  const none = await pluginDir(t.testdir(), { id: 'noegress', wat: 'http', tools: [{ id: 'fetch' }] });
  writeTests(none, 'none', [
    { name: 'no egress rights', tool: 'fetch', input: { url: 'https://api.example.test/' }, expect_error: 'egress to https://api.example.test:443 refused: this plugin has no egress rights' },
  ]);
  const r1 = await runPluginTests(none);
  t.same(r1.cases.map((c) => [c.ok, c.problems.join('; ')]), [[true, '']]);
  t.same(r1.cases[0]!.requests, [], 'nothing was answered');

  const api = await pluginDir(t.testdir(), { id: 'limits', wat: 'http', tools: [{ id: 'fetch' }], requests: { egress: [{ host: 'api.example.test' }] }, risk: ['network'] });
  const headers = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`x-h${i}`, 'v']));
  writeTests(api, 'limits', [
    { name: 'too many headers', tool: 'fetch', input: { url: 'https://api.example.test/', headers }, http: [{ url: 'https://api.example.test/', status: 200, body: {} }], expect_error: 'egress refused: 65 headers (at most 64)' },
  ]);
  const r2 = await runPluginTests(api);
  t.same(r2.cases.map((c) => [c.ok, c.problems.join('; ')]), [[true, '']]);
});

t.test('a spinning plugin is stopped at its requests.time budget and the next case runs', async (t) => {
  const dir = await pluginDir(t.testdir(), { id: 'spinner', wat: await wat(SPIN_WAT), tools: [{ id: 'spin' }, { id: 'echo', export: 'spin' }], requests: { time: { timeout_ms: 300 } } });
  writeTests(dir, 'spin', [
    { name: 'times out', tool: 'spin', input: {} },
    { name: 'timeout expected', tool: 'spin', input: {}, expect_error: 'exceeded its 300 ms budget' },
  ]);
  const started = Date.now();
  const r = await runPluginTests(dir);
  t.ok(Date.now() - started < 10_000);
  t.same(r.cases.map((c) => c.ok), [false, true]);
  t.match(byName(r, 'times out').problems[0], /TYRUM_ERR_SANDBOX_TIMEOUT: .*exceeded its 300 ms budget/);
  t.equal(r.limits.wall_ms, 300);
  const u = byName(r, 'times out').usage!;
  t.ok(u.wall_ms >= 290, `wall ${u.wall_ms} ms`);
  const line = formatReport(r).find((l) => l.startsWith('✗ times out'))!;
  t.match(line, /wall [\d.]+\/300 ms · mem \?\/256 pages/);
});

t.test('the first-party text-utils plugin passes its own style of tests', async (t) => {
  const dir = t.testdir({ 'plugin.wasm': '', 'tyrum.plugin.json': '' });
  // Copy the built plugin so that the tests directory lives next to it.
  const { copyFileSync } = await import('node:fs');
  copyFileSync(join(BUILT.textUtils, 'plugin.wasm'), join(dir, 'plugin.wasm'));
  copyFileSync(join(BUILT.textUtils, 'tyrum.plugin.json'), join(dir, 'tyrum.plugin.json'));
  writeTests(dir, 'words', [
    { name: 'counts words', tool: 'word_count', input: { text: 'hello big world' }, expect: { words: 3, chars: 15, lines: 1 } },
    { name: 'slug', tool: 'transform', input: { text: 'Crème Brûlée!', op: 'slug' }, expect: { text: 'creme-brulee' } },
  ]);
  const r = await runPluginTests(dir);
  t.same(r.cases.map((c) => [c.name, c.ok, c.problems]), [
    ['counts words', true, []],
    ['slug', true, []],
  ]);
});

t.test('no tests, and a test file that is not an array', async (t) => {
  const dir = await pluginDir(t.testdir(), { id: 'none', wat: await wat(ECHO_WAT), tools: [{ id: 'echo' }] });
  await t.rejects(runPluginTests(dir), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /no tests found: expected .*tests\/\*\.test\.json/ });
  writeTests(dir, 'bad', { tool: 'echo' });
  writeTests(dir, 'good', [{ tool: 'echo', input: {} }]);
  const r = await runPluginTests(dir);
  t.same(r.cases.map((c) => [c.name, c.ok]), [
    ['tests/bad.test.json', false],
    ['tests/good.test.json #1', true],
  ]);
  t.match(r.cases[0]!.problems[0], /must be a JSON array of test cases/);
});
