// Channel adapters in the author's loop: `tyrum plugin new --kind channel` (AssemblyScript) builds
// and passes its own tests straight away, and `tyrum plugin test` runs inbound and outbound cases
// with the host's own checks (webhook verification, the headers the plugin is shown,
// checkInboundResult, checkOutboundResult with its destination rule, outboundUrl and
// outboundHeaders), reporting what differed and never printing the credential.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import wabtInit from 'wabt';
import { isTyrumError } from '../../../core/errors/index.js';
import { signHmac } from '../../../core/channels/verify.js';
import { pluginBuild, pluginNew } from '../../../sdk/author/cli/new-build.js';
import { pluginTest } from '../../../sdk/author/cli/test-pack.js';
import { formatReport, runPluginTests, type HarnessReport } from '../../../sdk/author/harness.js';
import { scaffoldChannelManifest, scaffoldPlugin } from '../../../sdk/author/scaffold.js';
import { parseManifest } from '../../../manifests/manifest.js';
import { sha256Hex } from '../../../manifests/source.js';
import { SandboxPool } from '../../../sandbox/index.js';
import type { PluginManifest } from '../../../schemas/index.js';
import type { Io } from '../../../core/cli/main.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Run a command function the way core/cli/main.ts does: a thrown TyrumError becomes its exit code and message. */
async function cli(fn: (argv: string[], io: Io) => Promise<number>, argv: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s) };
  try {
    const code = await fn(argv, io);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } catch (e) {
    if (!isTyrumError(e)) throw e;
    err.push(`tyrum: ${e.message} [${e.code}]`);
    return { code: e.code === 'TYRUM_ERR_INVALID_ARGUMENT' ? 2 : 1, out: out.join('\n'), err: err.join('\n') };
  }
}

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());

const readJson = <T = Record<string, unknown>>(...p: string[]): T => JSON.parse(readFileSync(join(...p), 'utf8')) as T;

function writeTests(dir: string, name: string, cases: unknown): void {
  mkdirSync(join(dir, 'tests'), { recursive: true });
  writeFileSync(join(dir, 'tests', `${name}.test.json`), JSON.stringify(cases, null, 2));
}

function byName(r: HarnessReport, name: string) {
  const c = r.cases.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  return c;
}

const verdicts = (r: HarnessReport) => r.cases.map((c) => [c.name, c.ok]);

// --- the scaffold, built once (the AssemblyScript toolchain is an npm dependency) ---

const parent = t.testdir();
let built = '';
t.before(async () => {
  const r = await cli(pluginNew, ['chat-as', '--kind', 'channel', '--dir', parent]);
  if (r.code !== 0) throw new Error(`scaffold failed: ${r.err}`);
  const b = await cli(pluginBuild, [join(parent, 'chat-as')]);
  if (b.code !== 0) throw new Error(`build failed: ${b.err}`);
  built = join(parent, 'chat-as');
});

/** A copy of the built scaffold with only the given test files. */
function copyOfScaffold(t: Test, tests: Record<string, unknown>): string {
  const dir = join(t.testdir(), 'chat-as');
  cpSync(built, dir, { recursive: true, filter: (src) => !src.includes(`${join(built, 'tests')}`) });
  for (const [name, cases] of Object.entries(tests)) writeTests(dir, name, cases);
  return dir;
}

t.test('new --kind channel: the files, a valid channel manifest, a README explaining the ABI', async (t) => {
  const dir = built;
  const manifest = parseManifest(readFileSync(join(dir, 'tyrum.plugin.json'))) as PluginManifest;
  t.same(manifest.contributes.tools, [], 'no tools');
  t.equal(manifest.contributes.channels?.length, 1, 'one channel');
  t.match(manifest.contributes.channels![0], {
    id: 'chat',
    verify: { scheme: 'hmac_sha256' },
    inbound: { export: 'inbound' },
    outbound: { export: 'outbound', api_base: 'https://chat.example.com/api', destination: { chat: '/chat_id', thread: '/thread_id' }, receipt_pointer: '/id' },
  });
  t.notOk('ok_pointer' in manifest.contributes.channels![0]!.outbound, 'no ok_pointer');
  t.same({ ...manifest, wasm: undefined }, { ...scaffoldChannelManifest('chat-as'), wasm: undefined }, 'the manifest is scaffoldChannelManifest (with the digest build wrote)');
  t.match(manifest.wasm.sha256, /^[0-9a-f]{64}$/);
  t.not(manifest.wasm.sha256, '0'.repeat(64), 'build wrote the digest');
  const index = readFileSync(join(dir, 'assembly', 'index.ts'), 'utf8');
  t.match(index, /export function inbound\(\): i32/);
  t.match(index, /export function outbound\(\): i32/);
  t.match(index, /from "\.\/json"/, 'uses the shared JSON helper');
  t.match(index, /Bearer \{\{credential\}\}/, 'the credential placeholder is left for the host');
  const readme = readFileSync(join(dir, 'README.md'), 'utf8');
  t.match(readme, /## The channel ABI/);
  t.match(readme, /## Tests: `tests\/\*\.test\.json`/);
  for (const s of ['"inbound"', '"outbound"', '"verify"', 'expect.unverified', 'TYRUM_ERR_CHANNEL_DESTINATION', '{{credential}}', 'docs/channels.md']) t.ok(readme.includes(s), `README mentions ${s}`);
  t.notMatch(readme, /\{\{(id|assemblyscript_version|as_pdk_version|test_format)\}\}/, 'placeholders filled');
  const inbound = readJson<unknown[]>(dir, 'tests', 'inbound.test.json');
  const outbound = readJson<unknown[]>(dir, 'tests', 'outbound.test.json');
  t.ok(inbound.length >= 3 && outbound.length >= 3, 'example cases of both kinds');
});

t.test('new --kind channel: built with tyrum plugin build, its own tests pass with tyrum plugin test', async (t) => {
  const dir = copyOfScaffold(t, {});
  cpSync(join(built, 'tests'), join(dir, 'tests'), { recursive: true });
  const b = await cli(pluginBuild, [dir]);
  t.equal(b.code, 0, b.err);
  t.match(b.out, /tools: {4}none/);
  t.match(b.out, /channels: chat \(exports inbound, outbound\)/);
  const r = await cli(pluginTest, [dir]);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /^✓ a signed webhook, recorded as the platform sent it \[tests\/inbound\.test\.json #1 inbound chat\] {2}wall /m);
  t.match(r.out, /^✓ a forged signature is refused before the plugin sees it \[tests\/inbound\.test\.json #2 inbound chat\] {2}webhook refused by the host \(bad_signature\), plugin not called$/m);
  t.match(r.out, /^✓ a reply is one POST \/messages with the bot token \[tests\/outbound\.test\.json #1 outbound chat\]/m);
  t.match(r.out, /\n9 passed, 0 failed$/);
  t.notOk(r.out.includes('test-token'), 'the default credential is never printed');
  const json = await cli(pluginTest, [dir, '--json']);
  const report = JSON.parse(json.out) as HarnessReport;
  t.equal(report.failed, 0);
  const first = report.cases[0]!;
  t.match(first, { kind: 'inbound', channel: 'chat', tool: '-', verified: 'ok', shown_headers: ['content-type'] });
  t.same(first.inbound?.messages, [{ external_id: 'm-1001', sender: { id: 'u-42', name: 'Ada' }, chat: { id: 'c-7', kind: 'direct' }, thread_id: null, text: 'Hello, bot!' }]);
  const out = report.cases.find((c) => c.kind === 'outbound')!;
  t.same(out.outbound, [
    { method: 'POST', path: '/messages', url: 'https://chat.example.com/api/messages', headers: { authorization: 'Bearer [REDACTED:CREDENTIAL]' }, body: { chat_id: 'c-7', thread_id: null, text: 'Hello, Ada!' } },
  ]);
  t.notOk(json.out.includes('test-token'), 'nor in the JSON report');
  t.notOk(json.out.includes('local-token-123'), "nor a case's own credential");
});

t.test('--kind channel is AssemblyScript only; an unknown kind is a usage error', async (t) => {
  const dir = t.testdir();
  const c = await cli(pluginNew, ['chat-c', '--kind', 'channel', '--lang', 'c', '--dir', dir]);
  t.equal(c.code, 2);
  t.match(c.err, /channel templates exist for AssemblyScript only/);
  t.throws(() => scaffoldPlugin({ name: 'chat-c', kind: 'channel', lang: 'c', parent: dir }), /channel templates exist for AssemblyScript only/);
  const bogus = await cli(pluginNew, ['chat-x', '--kind', 'bot', '--dir', dir]);
  t.equal(bogus.code, 2);
  t.match(bogus.err, /unknown --kind "bot" \(known: tool, channel\)/);
  const explicit = await cli(pluginNew, ['chat-y', '--kind', 'channel', '--lang', 'assemblyscript', '--dir', dir]);
  t.equal(explicit.code, 0, explicit.err);
  const tool = await cli(pluginNew, ['tool-z', '--kind', 'tool', '--dir', dir]);
  t.equal(tool.code, 0, tool.err);
  t.match(tool.out, /Created tool-z \(AssemblyScript\) in /, '--kind tool is the tool scaffold');
  t.same(readJson<PluginManifest>(dir, 'tool-z', 'tyrum.plugin.json').contributes.tools.map((x) => x.id), ['hello']);
  const help = await cli(pluginNew, ['--help']);
  t.match(help.out, /--kind channel/);
});

t.test('inbound cases: verification, a wrong expected chat, a forged signature, headers, errors', async (t) => {
  const secret = 'webhook-secret-1';
  const body = JSON.stringify({ id: 'm-1', sender: { id: 'u-1', name: 'Ada' }, chat: { id: 'c-1', kind: 'group' }, text: 'hi' });
  const ts = 1767225600;
  const signed = signHmac(secret, body, ts * 1000);
  const dir = copyOfScaffold(t, {
    in: [
      { name: 'recorded and verified', inbound: { body, headers: { ...signed, 'content-type': 'application/json', 'x-other': 'x' } }, verify: { secret }, expect: { messages: [{ chat: { id: 'c-1', kind: 'group' } }] } },
      { name: 'wrong expected chat', inbound: { body, headers: signed }, verify: { secret }, expect: { messages: [{ chat: { id: 'c-2' } }] } },
      { name: 'wrong count', inbound: { body }, expect: { messages: [] } },
      { name: 'forged, unexpected', inbound: { body, headers: { ...signed, 'x-tyrum-signature': `sha256=${'0'.repeat(64)}` } }, verify: { secret } },
      { name: 'forged, expected', inbound: { body, headers: { ...signed, 'x-tyrum-signature': `sha256=${'0'.repeat(64)}` } }, verify: { secret }, expect: { unverified: true } },
      { name: 'wrong secret', inbound: { body, headers: signed }, verify: { secret: 'another-secret' }, expect: { unverified: 'bad_signature' } },
      { name: 'stale at the given clock', inbound: { body, headers: signed }, verify: { secret, now: ts + 301 }, expect: { unverified: 'stale_timestamp' } },
      { name: 'fresh at the given clock', inbound: { body, headers: signed }, verify: { secret, now: ts + 299 }, expect: { messages: [{ external_id: 'm-1' }] } },
      { name: 'no signature headers', inbound: { body }, verify: { secret }, expect: { unverified: 'missing_header' } },
      { name: 'expected refused, but verifies', inbound: { body, headers: signed }, verify: { secret }, expect: { unverified: true } },
      { name: 'signed by the harness', inbound: { body: { id: 7, sender: { id: 1 }, chat: { id: 2 }, text: 'x' } }, verify: { secret, sign: true }, expect: { messages: [{ external_id: '7', chat: { id: '2', kind: 'direct' } }] } },
      { name: 'plugin error expected', inbound: { body: 'not json' }, expect: { error: 'webhook body: not valid JSON' } },
      { name: 'plugin error by code', inbound: { body: 'not json' }, expect: { error: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR' } },
      { name: 'plugin error unexpected', inbound: { body: 'not json' } },
      { name: 'respond mismatch', inbound: { body: { type: 'ping', challenge: 'a' } }, expect: { respond: { body: { challenge: 'b' } } } },
      { name: 'unknown channel', inbound: { channel: 'nope', body } },
      { name: 'typo', inbound: { body }, expekt: {} },
      { name: 'unverified without verify', inbound: { body }, expect: { unverified: true } },
    ],
  });
  const r = await runPluginTests(dir, { pool });
  t.same(verdicts(r), [
    ['recorded and verified', true],
    ['wrong expected chat', false],
    ['wrong count', false],
    ['forged, unexpected', false],
    ['forged, expected', true],
    ['wrong secret', true],
    ['stale at the given clock', true],
    ['fresh at the given clock', true],
    ['no signature headers', true],
    ['expected refused, but verifies', false],
    ['signed by the harness', true],
    ['plugin error expected', true],
    ['plugin error by code', true],
    ['plugin error unexpected', false],
    ['respond mismatch', false],
    ['unknown channel', false],
    ['typo', false],
    ['unverified without verify', false],
  ]);
  t.same(byName(r, 'recorded and verified').shown_headers, ['content-type'], 'only the headers the manifest lists; never a signature header');
  t.match(byName(r, 'wrong expected chat').problems[0], /^inbound messages differ at \/messages\/0\/chat\/id: expected "c-2", got "c-1"\n {2}got \[/);
  t.match(byName(r, 'wrong count').problems[0], /^inbound messages differ at \/messages: expected 0 items, got 1/);
  t.match(byName(r, 'forged, unexpected').problems[0], /the webhook does not verify \(hmac_sha256: bad_signature\); the host would refuse it with TYRUM_ERR_CHANNEL_UNVERIFIED/);
  t.equal(byName(r, 'forged, unexpected').usage, null, 'the plugin is not called');
  t.equal(byName(r, 'forged, expected').verified, 'bad_signature');
  t.match(byName(r, 'expected refused, but verifies').problems[0], /expected the webhook to be refused \(hmac_sha256\), but it verifies/);
  t.match(byName(r, 'plugin error unexpected').problems[0], /webhook body: not valid JSON/);
  t.match(byName(r, 'respond mismatch').problems[0], /inbound respond differs at \/respond\/body\/challenge: expected "b", got "a"/);
  t.match(byName(r, 'unknown channel').problems[0], /no channel "nope" in plugin chat-as \(channels: chat\)/);
  t.match(byName(r, 'typo').problems[0], /not a valid inbound case: .*expekt/);
  t.match(byName(r, 'unverified without verify').problems[0], /expect\.unverified needs "verify"/);

  const lines = formatReport(r);
  t.ok(lines.some((l) => /^✗ wrong expected chat \[tests\/in\.test\.json #2 inbound chat\]/.test(l)), 'the report line names the kind and the channel');
  t.ok(lines.includes('    inbound messages differ at /messages/0/chat/id: expected "c-2", got "c-1"'), 'and what differed');
  t.notOk([...lines, JSON.stringify(r)].join('\n').includes(secret), 'the verification secret is never printed');
});

t.test('outbound cases: requests as sent, a wrong expected chat, counts, and the credential redacted', async (t) => {
  const dir = copyOfScaffold(t, {
    out: [
      { name: 'as sent', outbound: { text: 'hi', chat_id: 'c-1' }, expect: { requests: [{ method: 'POST', url: 'https://chat.example.com/api/messages', path: '/messages', headers: { authorization: 'Bearer test-token' }, body: { chat_id: 'c-1', thread_id: null, text: 'hi' } }], count: 1 } },
      { name: 'wrong expected chat', outbound: { text: 'hi', chat_id: 'c-1' }, expect: { requests: [{ body: { chat_id: 'c-2' } }] } },
      { name: 'wrong header', outbound: { text: 'hi', chat_id: 'c-1', credential: 'secret-bot-token' }, expect: { requests: [{ headers: { authorization: 'Token {{credential}}' } }] } },
      { name: 'wrong url', outbound: { text: 'hi', chat_id: 'c-1' }, expect: { requests: [{ url: 'https://chat.example.com/messages' }] } },
      { name: 'wrong count', outbound: { text: 'x'.repeat(100), chat_id: 'c-1', text_limit: 64 }, expect: { count: 1 } },
      { name: 'split', outbound: { text: 'x'.repeat(100), chat_id: 'c-1', text_limit: 64 }, expect: { requests: [{ body: { text: 'x'.repeat(64) } }, { body: { text: 'x'.repeat(36) } }] } },
      { name: 'too many parts', outbound: { text: 'x'.repeat(100), chat_id: 'c-1', text_limit: 5 }, expect: { error: 'reply too long' } },
      { name: 'thread', outbound: { text: 'hi', chat_id: 'c-1', thread_id: 't-1' }, expect: { requests: [{ body: { thread_id: 't-1' } }] } },
      { name: 'no credential', outbound: { text: 'hi', chat_id: 'c-1', credential: null }, expect: { error: 'uses {{credential}} but the instance has no credential' } },
      { name: 'short credential', outbound: { text: 'hi', chat_id: 'c-1', credential: 'abc' } },
      { name: 'expected an error', outbound: { text: 'hi', chat_id: 'c-1' }, expect: { error: 'TYRUM_ERR_CHANNEL_DESTINATION' } },
    ],
  });
  const r = await runPluginTests(dir, { pool });
  t.same(verdicts(r), [
    ['as sent', true],
    ['wrong expected chat', false],
    ['wrong header', false],
    ['wrong url', false],
    ['wrong count', false],
    ['split', true],
    ['too many parts', true],
    ['thread', true],
    ['no credential', true],
    ['short credential', false],
    ['expected an error', false],
  ]);
  t.same(byName(r, 'wrong expected chat').problems, ['outbound request 1 (POST /messages): body differs at /body/chat_id: expected "c-2", got "c-1"']);
  t.same(byName(r, 'wrong header').problems, ['outbound request 1 (POST /messages): header authorization expected "Token [REDACTED:CREDENTIAL]", got "Bearer [REDACTED:CREDENTIAL]"']);
  t.same(byName(r, 'wrong url').problems, ['outbound request 1 (POST /messages): url expected https://chat.example.com/messages, got https://chat.example.com/api/messages']);
  t.same(byName(r, 'wrong count').problems, ['outbound: expected 1 request, got 2']);
  t.match(byName(r, 'short credential').problems[0], /outbound\.credential: a fake credential needs at least 6 bytes/);
  t.match(byName(r, 'expected an error').problems[0], /expected an error matching "TYRUM_ERR_CHANNEL_DESTINATION", but the outbound export answered 1 request that pass/);
  const printed = [...formatReport(r), JSON.stringify(r)].join('\n');
  t.notOk(printed.includes('test-token'), 'the default credential never appears in the report');
  t.notOk(printed.includes('secret-bot-token'), "nor a case's own");
  t.ok(formatReport(r).some((l) => /^✗ wrong expected chat \[tests\/out\.test\.json #2 outbound chat\]/.test(l)));
});

// --- hand-written adapters: what the host's checks catch ---

let wabt: ReturnType<typeof wabtInit> | undefined;
/** A module whose exports each output a fixed text. */
async function fixedOutputs(outputs: Record<string, string>): Promise<Buffer> {
  const w = await (wabt ??= wabtInit());
  let offset = 0;
  const data: string[] = [];
  const funcs: string[] = [];
  for (const [name, text] of Object.entries(outputs)) {
    const bytes = Buffer.from(text, 'utf8');
    data.push(`(data (i32.const ${offset}) "${[...bytes].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('')}")`);
    funcs.push(`(func (export "${name}") (result i32)
      (local $k i64) (local $i i32)
      (local.set $k (call $alloc (i64.const ${bytes.length})))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.const ${bytes.length})))
        (call $store_u8 (i64.add (local.get $k) (i64.extend_i32_u (local.get $i))) (i32.load8_u (i32.add (i32.const ${offset}) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (call $output_set (local.get $k) (i64.const ${bytes.length}))
      (i32.const 0))`);
    offset += bytes.length + 8;
  }
  const mod = w.parseWat(
    'fixed.wat',
    `(module
      (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
      (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
      (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
      (memory (export "memory") 1)
      ${data.join('\n')}
      ${funcs.join('\n')})`,
  );
  try {
    mod.validate();
    return Buffer.from(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** A plugin directory with the given module and channels (and tools). */
function channelPlugin(parentDir: string, wasm: Buffer, channels: Record<string, unknown>[], tools: Record<string, unknown>[] = []): string {
  const dir = join(parentDir, `plugin-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'plugin.wasm'), wasm);
  const manifest = {
    manifest_version: 1,
    id: 'fixed',
    name: 'fixed',
    version: '1.0.0',
    description: 'fixed answers',
    publisher: 'Tyrum tests',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: 'plugin.wasm', sha256: sha256Hex(wasm) },
    contributes: { tools, channels },
  };
  parseManifest(Buffer.from(JSON.stringify(manifest)));
  writeFileSync(join(dir, 'tyrum.plugin.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

const channel = (id: string, inbound: string, outbound: string, extra: Record<string, unknown> = {}) => ({
  id,
  description: `channel ${id}`,
  verify: { scheme: 'hmac_sha256' },
  inbound: { export: inbound },
  outbound: { export: outbound, api_base: 'https://api.example.test/bot', paths: ['/send', '/bot{{credential}}/send'], destination: { chat: '/chat', thread: '/thread' } },
  ...extra,
});

t.test('a destination-violating adapter is caught exactly as on the gateway', async (t) => {
  const req = (body: unknown, path = '/send', headers?: Record<string, string>) => JSON.stringify({ requests: [{ method: 'POST', path, ...(headers ? { headers } : {}), body }] });
  const wasm = await fixedOutputs({
    other_chat: req({ chat: 'other', text: 'x' }),
    other_thread: req({ chat: 'c-1', thread: 't-9', text: 'x' }),
    leaves_base: req({ chat: 'c-1' }, '//evil.example/x'),
    credential_in_body: req({ chat: 'c-1', text: '{{credential}}' }),
    credential_in_path: req({ chat: 'c-1' }, '/bot{{credential}}/send'),
    not_json: 'nope',
    empty: '{}',
    echo_tool: '{"ok":true}',
  });
  const outs = ['other_chat', 'other_thread', 'leaves_base', 'credential_in_body', 'credential_in_path', 'not_json', 'empty'];
  const dir = channelPlugin(
    t.testdir(),
    wasm,
    outs.map((o) => channel(o, 'empty', o)),
    [{ id: 'echo_tool', export: 'echo_tool', description: 'ok', input_schema: { type: 'object' }, output_schema: { type: 'object' }, effect: 'read_only' }],
  );
  const base = { text: 'x', chat_id: 'c-1' };
  writeTests(dir, 'dest', [
    { name: 'another chat', outbound: { ...base, channel: 'other_chat' } },
    { name: 'another chat, expected', outbound: { ...base, channel: 'other_chat' }, expect: { error: 'TYRUM_ERR_CHANNEL_DESTINATION' } },
    { name: 'another thread', outbound: { ...base, channel: 'other_thread', thread_id: 't-1' }, expect: { error: 'another thread' } },
    { name: 'a thread where none', outbound: { ...base, channel: 'other_thread' }, expect: { error: 'TYRUM_ERR_CHANNEL_DESTINATION' } },
    { name: 'leaves the base', outbound: { ...base, channel: 'leaves_base' }, expect: { error: 'TYRUM_ERR_CHANNEL_DESTINATION' } },
    { name: 'credential in the body', outbound: { ...base, channel: 'credential_in_body' }, expect: { error: 'TYRUM_ERR_CHANNEL_DESTINATION' } },
    { name: 'credential in the path', outbound: { ...base, channel: 'fixed.credential_in_path', credential: 'a/b token' }, expect: { requests: [{ path: '/bot{{credential}}/send', url: 'https://api.example.test/bot/bota%2Fb%20token/send' }] } },
    { name: 'not json', outbound: { ...base, channel: 'not_json' }, expect: { error: 'TYRUM_ERR_CHANNEL_ADAPTER' } },
    { name: 'no request', outbound: { ...base, channel: 'empty' }, expect: { error: 'must return a JSON object {requests' } },
    { name: 'no channel named', outbound: base },
    { name: 'a tool case in the same file', tool: 'echo_tool', input: {}, expect: { ok: true } },
    { name: 'inbound of no message', inbound: { channel: 'empty', body: '{}' }, expect: { messages: [], respond: null } },
  ]);
  const r = await runPluginTests(dir, { pool });
  t.same(verdicts(r), [
    ['another chat', false],
    ['another chat, expected', true],
    ['another thread', true],
    ['a thread where none', true],
    ['leaves the base', true],
    ['credential in the body', true],
    ['credential in the path', true],
    ['not json', true],
    ['no request', true],
    ['no channel named', false],
    ['a tool case in the same file', true],
    ['inbound of no message', true],
  ]);
  t.match(byName(r, 'another chat').problems[0], /^TYRUM_ERR_CHANNEL_DESTINATION: requests\[0\] is addressed to another chat than the conversation's \(at \/chat\)$/);
  t.match(byName(r, 'no channel named').problems[0], /the plugin has 7 channels \(.*\); name one/);
  t.match(byName(r, 'a tool case in the same file'), { kind: 'tool', tool: 'echo_tool' });
  const printed = [...formatReport(r), JSON.stringify(r)].join('\n');
  t.notOk(printed.includes('a/b token') || printed.includes('a%2Fb%20token'), 'the credential, plain or URL-encoded, is redacted');
  t.ok(formatReport(r).some((l) => l.startsWith('✗ another chat [tests/dest.test.json #1 outbound other_chat]')));

  // A tool plugin has no channel to test.
  const toolOnly = channelPlugin(t.testdir(), wasm, [], [{ id: 'echo_tool', export: 'echo_tool', description: 'ok', input_schema: { type: 'object' }, output_schema: { type: 'object' }, effect: 'read_only' }]);
  writeTests(toolOnly, 'x', [{ name: 'no channel', inbound: { body: '{}' } }, { tool: 'echo_tool', input: {}, expect: { ok: true } }]);
  const r2 = await runPluginTests(toolOnly, { pool });
  t.same(verdicts(r2), [['no channel', false], ['tests/x.test.json #2', true]]);
  t.match(r2.cases[0]!.problems[0], /plugin fixed has no channel \(contributes\.channels\), so it has no inbound export to test/);
});

t.test('slack_v0 and telegram_secret_token webhooks verify and sign the way the host checks them', async (t) => {
  const msg = JSON.stringify({ messages: [{ external_id: '1', sender: { id: 'u' }, chat: { id: 'c', kind: 'direct' }, text: 'hi' }] });
  const wasm = await fixedOutputs({ in: msg, out: '{}' });
  const dir = channelPlugin(t.testdir(), wasm, [
    channel('slack', 'in', 'out', { verify: { scheme: 'slack_v0' }, inbound: { export: 'in', headers: ['x-slack-signature', 'x-slack-retry-num'] } }),
    channel('tg', 'in', 'out', { verify: { scheme: 'telegram_secret_token' } }),
  ]);
  writeTests(dir, 'schemes', [
    { name: 'slack signed', inbound: { channel: 'slack', body: 'token=x&text=hi', headers: { 'X-Slack-Retry-Num': '1' } }, verify: { secret: 'slack-signing-secret', sign: true }, expect: { messages: [{ text: 'hi' }] } },
    { name: 'slack forged', inbound: { channel: 'slack', body: 'a', headers: { 'x-slack-request-timestamp': '1767225600', 'x-slack-signature': 'v0=00' } }, verify: { secret: 'slack-signing-secret' }, expect: { unverified: 'bad_signature' } },
    { name: 'telegram token', inbound: { channel: 'tg', body: {}, headers: { 'x-telegram-bot-api-secret-token': 'tg-secret-1' } }, verify: { secret: 'tg-secret-1' }, expect: { messages: [{ external_id: '1' }] } },
    { name: 'telegram wrong token', inbound: { channel: 'tg', body: {}, headers: { 'x-telegram-bot-api-secret-token': 'tg-secret-2' } }, verify: { secret: 'tg-secret-1' }, expect: { unverified: 'bad_signature' } },
  ]);
  const r = await runPluginTests(dir, { pool });
  t.same(verdicts(r), [
    ['slack signed', true],
    ['slack forged', true],
    ['telegram token', true],
    ['telegram wrong token', true],
  ]);
  t.same(byName(r, 'slack signed').shown_headers, ['x-slack-retry-num'], 'a signature header is never shown, even when the manifest lists it');
});
