// WasmMcpConnection over a real SandboxPool: the mcp-time plugin (built from plugins/mcp-time,
// written against the mcp.run servlet / hyper-mcp v1 ABI only) lists and calls its tools; hostile
// modules (WAT compiled with wabt) whose describe/call output is not JSON, has the wrong shape or
// lists too many tools are refused with TYRUM_ERR_SANDBOX_PLUGIN_ERROR; sandbox failures keep
// their own codes.
import { readFileSync } from 'node:fs';
import t from 'tap';
import fc from 'fast-check';
import wabtInit from 'wabt';
import { WASM_MCP_EXPORTS, MAX_WASM_MCP_TOOLS, WasmMcpConnection } from '../../../core/mcp/wasm.js';
import type { McpCallResult } from '../../../core/mcp/types.js';
import { parseManifest, readPluginSource } from '../../../manifests/index.js';
import { SandboxPool, inspectModule, type LoadOptions } from '../../../sandbox/index.js';
import { BUILD_SCRIPT, readBuilt, sha256 } from '../../plugins/helpers.js';

const plugin = readBuilt('mcp-time');
const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());

const OPTS = { timeoutMs: 5000 };

/** A connection to the module loaded under `key`, as the plugin host binds it. */
function connect(key: string, extra: { maxOutputBytes?: number } = {}): WasmMcpConnection {
  return new WasmMcpConnection({
    serverName: key,
    call: (exportName, input, { timeoutMs }) => pool.call(key, exportName, input, { wallMs: timeoutMs }).then((r) => r.output),
    ...extra,
  });
}

async function loadTime(key: string, opts: Partial<LoadOptions> = {}): Promise<WasmMcpConnection> {
  await pool.load(key, { wasm: plugin.wasm, expectedSha256: plugin.manifest.wasm.sha256, exports: WASM_MCP_EXPORTS, ...opts });
  return connect(key);
}

const time = await loadTime('mcp-time');
const zoned = await loadTime('mcp-time-zoned', { config: { utc_offset: '+05:30' } });

/** The JSON text of a successful result's single text item. */
function json(r: McpCallResult): Record<string, unknown> {
  if (r.isError) throw new Error(`unexpected isError result: ${JSON.stringify(r.content)}`);
  const [item] = r.content;
  if (r.content.length !== 1 || item?.['type'] !== 'text' || typeof item['text'] !== 'string') throw new Error(`unexpected content ${JSON.stringify(r.content)}`);
  return JSON.parse(item['text']) as Record<string, unknown>;
}

/** The message of an isError result. */
function toolError(r: McpCallResult): string {
  if (r.isError !== true) throw new Error(`expected an isError result, got ${JSON.stringify(r)}`);
  return String(r.content[0]?.['text']);
}

t.test('the mcp-time module imports only the Extism kernel and exports the WASM MCP ABI', async (t) => {
  const report = inspectModule(plugin.wasm, { expectedSha256: sha256(plugin.wasm), exports: WASM_MCP_EXPORTS, memoryPages: 256, maxModuleBytes: 1 << 26 });
  const imports = report.imports.map((i) => `${i.module}.${i.name}`);
  t.ok(imports.length > 0);
  t.same(imports.filter((i) => !i.startsWith('extism:host/env.')), [], 'no tyrum:host/v1, no env.abort, no WASI');
  const exported = report.exports.filter((e) => e.kind === 'function').map((e) => e.name);
  t.same(exported.sort(), [...WASM_MCP_EXPORTS].sort());
  t.match(readFileSync(BUILD_SCRIPT, 'utf8'), `const WASM_MCP_EXPORTS = ${JSON.stringify(WASM_MCP_EXPORTS).replaceAll('"', "'").replaceAll(',', ', ')};`, 'the build script requires the same exports');
});

t.test('its manifest (no tools, one wasm MCP server) passes manifest validation and install-time checks', async (t) => {
  const m = parseManifest(readFileSync(`${plugin.dir}/tyrum.plugin.json`));
  t.same(m.contributes.tools, []);
  t.same(m.contributes.mcp_servers, [{ name: 'time', transport: 'wasm', description: m.contributes.mcp_servers?.[0]?.description }]);
  const source = await readPluginSource(plugin.dir);
  t.equal(source.wasmSha256, sha256(plugin.wasm));
});

t.test('listTools returns the three tools from describe, normalized to MCP Tool fields', async (t) => {
  const tools = await time.listTools(OPTS);
  t.same(
    tools.map((x) => x.name),
    ['time_offset', 'parse_time', 'format_time'],
  );
  for (const tool of tools) {
    t.same(Object.keys(tool).sort(), ['annotations', 'description', 'inputSchema', 'name'], `${tool.name}: only MCP fields`);
    t.match(tool, { inputSchema: { type: 'object', additionalProperties: false }, annotations: { readOnlyHint: true } });
    t.ok((tool.description ?? '').length > 20);
  }
  t.same(tools[0]?.inputSchema['required'], ['time', 'offset']);
  t.same(await time.listTools(OPTS), tools, 'stable across calls');
});

t.test('callTool runs the tools and returns their CallToolResult', async (t) => {
  t.same(json(await time.callTool('time_offset', { time: 1734085548, offset: -432000 }, OPTS)), {
    utc_time: '1733653548',
    utc_time_rfc2822: 'Sun, 8 Dec 2024 10:25:48 +0000',
    utc_time_rfc3339: '2024-12-08T10:25:48Z',
  });
  t.same(json(await time.callTool('parse_time', { time: 'Fri, 13 Dec 2024 10:25:48 +0000' }, OPTS))['utc_time'], '1734085548');
  t.same(json(await time.callTool('parse_time', { time: '13 dec 2024 12:25 +0200' }, OPTS))['utc_time'], '1734085500', 'no weekday, no seconds, any case');
  t.same(json(await time.callTool('parse_time', { time: '2024-12-13T12:25:48.999+02:00' }, OPTS))['utc_time'], '1734085548', 'RFC 3339, fraction dropped');
  t.same(json(await time.callTool('parse_time', { time: '0001-01-01T00:00:00Z' }, OPTS))['utc_time'], '-62135596800');
  t.same(json(await time.callTool('format_time', { time: 0, utc_offset: '-08:00' }, OPTS)), {
    time: '0',
    rfc3339: '1969-12-31T16:00:00-08:00',
    rfc2822: 'Wed, 31 Dec 1969 16:00:00 -0800',
    utc_offset: '-08:00',
  });
});

t.test('format_time defaults to the utc_offset config value (read with Config.get)', async (t) => {
  t.equal(json(await time.callTool('format_time', { time: 1734085548 }, OPTS))['rfc3339'], '2024-12-13T10:25:48Z', 'no config: UTC');
  t.equal(json(await zoned.callTool('format_time', { time: 1734085548 }, OPTS))['rfc3339'], '2024-12-13T15:55:48+05:30');
  t.equal(json(await zoned.callTool('format_time', { time: 1734085548, utc_offset: 'Z' }, OPTS))['rfc3339'], '2024-12-13T10:25:48Z', 'an argument wins');
  await pool.load('mcp-time-badzone', { wasm: plugin.wasm, expectedSha256: plugin.manifest.wasm.sha256, exports: WASM_MCP_EXPORTS, config: { utc_offset: 'Mars' } });
  t.match(toolError(await connect('mcp-time-badzone').callTool('format_time', { time: 0 }, OPTS)), /the configured "utc_offset" must be "Z" or "\+HH:MM".*got "Mars"/);
});

t.test('timestamps agree with JavaScript Date across years 1 to 9999 and round-trip through parse_time', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: -62135596800, max: 253402300799 }), async (s) => {
      const out = json(await time.callTool('format_time', { time: s, utc_offset: 'Z' }, OPTS));
      const iso = new Date(s * 1000).toISOString().replace('.000Z', 'Z');
      if (out['rfc3339'] !== iso) throw new Error(`${s}: ${String(out['rfc3339'])} !== ${iso}`);
      const back = json(await time.callTool('parse_time', { time: out['rfc2822'] }, OPTS));
      if (back['utc_time'] !== String(s)) throw new Error(`${s}: RFC 2822 ${String(out['rfc2822'])} parsed as ${String(back['utc_time'])}`);
    }),
    { numRuns: 150 },
  );
  t.pass('150 timestamps');
});

t.test('bad arguments are isError results the caller can read', async (t) => {
  t.match(toolError(await time.callTool('time_offset', { time: 1 }, OPTS)), /"offset" is required/);
  t.match(toolError(await time.callTool('time_offset', { time: 'soon', offset: 1 }, OPTS)), /"time" must be an integer, got a string/);
  t.match(toolError(await time.callTool('time_offset', { time: 253402300799, offset: 1 }, OPTS)), /outside years 1 to 9999/);
  t.match(toolError(await time.callTool('parse_time', { time: 'Mon, 13 Dec 2024 10:25:48 +0000' }, OPTS)), /names the wrong weekday: 13 Dec 2024 is a Friday/);
  t.match(toolError(await time.callTool('parse_time', { time: '2023-02-29T00:00:00Z' }, OPTS)), /names a day that does not exist \(Feb 2023 has 28 days\)/);
  t.match(toolError(await time.callTool('parse_time', { time: 'yesterday' }, OPTS)), /"yesterday" is neither RFC 3339 nor RFC 2822/);
  t.match(toolError(await time.callTool('parse_time', { time: 'x', extra: 1 }, OPTS)), /unknown argument "extra" \(allowed: time\)/);
});

t.test('an unknown tool fails the call with a coded error, as the ABI reports it (error_set)', async (t) => {
  await t.rejects(time.callTool('nope', {}, OPTS), { code: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR', message: /unknown tool "nope"/ });
  t.match(json(await time.callTool('parse_time', { time: '1 Jan 2000 00:00 GMT' }, OPTS)), { utc_time: '946684800' }, 'the instance still serves calls');
});

t.test('output above maxOutputBytes is refused', async (t) => {
  const small = connect('mcp-time', { maxOutputBytes: 256 });
  await t.rejects(small.listTools(OPTS), { code: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR', message: /describe: output of \d+ bytes exceeds the 256-byte limit/, details: { check: 'output_size' } });
  t.throws(() => connect('mcp-time', { maxOutputBytes: 0 }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
});

t.test('abort, close and the notification handlers', async (t) => {
  const c = connect('mcp-time');
  const why = new Error('caller went away');
  await t.rejects(c.listTools({ timeoutMs: 1000, signal: AbortSignal.abort(why) }), why, 'an aborted signal rejects with its reason');
  let notified = 0;
  c.onToolsChanged(() => notified++);
  c.onClosed(() => notified++);
  t.equal((await c.listTools(OPTS)).length, 3);
  await c.close();
  await t.rejects(c.callTool('parse_time', { time: 'x' }, OPTS), { code: 'TYRUM_ERR_INVALID_STATE', message: /closed/ });
  t.equal(notified, 0, 'a WASM server never notifies');
  t.equal((await time.listTools(OPTS)).length, 3, 'closing a connection leaves the module loaded');
});

// --- hostile modules --------------------------------------------------------------------------

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

/** WAT bytes as a string literal. */
const watString = (b: Uint8Array): string => [...b].map((x) => `\\${x.toString(16).padStart(2, '0')}`).join('');

/**
 * A module whose `describe` and `call` output fixed bytes (null: return 0 without output; 'trap':
 * unreachable), copied to a kernel block 8 bytes at a time as a PDK does.
 */
async function outputModule(describe: string | Uint8Array | null | 'trap', call: string | Uint8Array | null | 'trap' = null): Promise<Uint8Array> {
  const bytes = (v: string | Uint8Array): Uint8Array => (typeof v === 'string' ? new TextEncoder().encode(v) : v);
  const d = describe === null || describe === 'trap' ? new Uint8Array(0) : bytes(describe);
  const c = call === null || call === 'trap' ? new Uint8Array(0) : bytes(call);
  const at = Math.ceil(d.byteLength / 8) * 8 + 8;
  const pages = Math.ceil((at + c.byteLength) / 65536) + 1;
  const body = (v: typeof describe, ptr: number, len: number): string =>
    v === 'trap' ? 'unreachable' : v === null ? '' : `(call $emit (i32.const ${ptr}) (i32.const ${len}))`;
  const text = `(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
    (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
    (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
    (memory (export "memory") ${pages})
    (data (i32.const 0) "${watString(d)}")
    (data (i32.const ${at}) "${watString(c)}")
    (func $emit (param $ptr i32) (param $len i32)
      (local $k i64) (local $i i32)
      (local.set $k (call $alloc (i64.extend_i32_u (local.get $len))))
      (block $done8 (loop $l8
        (br_if $done8 (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $len)))
        (call $store_u64 (i64.add (local.get $k) (i64.extend_i32_u (local.get $i))) (i64.load (i32.add (local.get $ptr) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $l8)))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (call $store_u8 (i64.add (local.get $k) (i64.extend_i32_u (local.get $i))) (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (call $output_set (local.get $k) (i64.extend_i32_u (local.get $len))))
    (func (export "describe") (result i32) ${body(describe, 0, d.byteLength)} (i32.const 0))
    (func (export "call") (result i32) ${body(call, at, c.byteLength)} (i32.const 0)))`;
  const w = await (wabt ??= await wabtInit());
  const mod = w.parseWat('hostile.wat', text);
  try {
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

let hostileKeys = 0;
async function hostile(describe: string | Uint8Array | null | 'trap', call: string | Uint8Array | null | 'trap' = null): Promise<WasmMcpConnection> {
  const wasm = await outputModule(describe, call);
  const key = `hostile-${++hostileKeys}`;
  await pool.load(key, { wasm, expectedSha256: sha256(wasm), exports: WASM_MCP_EXPORTS });
  return connect(key);
}

const tool = (name: string): Record<string, unknown> => ({ name, description: name, inputSchema: { type: 'object' } });
const PLUGIN_ERROR = 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR';

t.test('describe output that is not JSON, or has the wrong shape, is refused', async (t) => {
  const cases: Array<[string, string | Uint8Array | null, RegExp]> = [
    ['not JSON', 'tools: none', /describe: output is not JSON/],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /describe: output is not valid UTF-8/],
    ['no output at all', null, /describe: output is empty, not JSON/],
    ['an array', JSON.stringify([tool('a')]), /output must be a ListToolsResult object \{"tools": \[...\]\}, got an array/],
    ['no tools key', JSON.stringify({ tool: [] }), /got an object without "tools"/],
    ['tools not an array', JSON.stringify({ tools: { a: tool('a') } }), /output's "tools" must be an array, got an object/],
    ['a tool that is a string', JSON.stringify({ tools: ['a'] }), /tools\[0\] must be an object, got a string/],
    ['a tool without inputSchema', JSON.stringify({ tools: [{ name: 'a', description: 'x' }] }), /tools\[0\] \("a"\)\.inputSchema must be a JSON Schema object, got nothing/],
    ['a bad tool name', JSON.stringify({ tools: [tool('rm -rf /')] }), /tools\[0\]\.name must be 1-128 characters of A-Z a-z 0-9 _ - \. \(got "rm -rf \/"\)/],
    ['a name that is a number', JSON.stringify({ tools: [{ ...tool('a'), name: 7 }] }), /tools\[0\]\.name must be .*\(got a number\)/],
    ['a description that is not a string', JSON.stringify({ tools: [{ ...tool('a'), description: ['x'] }] }), /tools\[0\] \("a"\)\.description must be a string, got an array/],
    ['outputSchema not an object', JSON.stringify({ tools: [{ ...tool('a'), outputSchema: 'object' }] }), /\.outputSchema must be an object, got a string/],
    ['a duplicate name', JSON.stringify({ tools: [tool('a'), tool('b'), tool('a')] }), /tools\[2\]: the name "a" is listed twice/],
  ];
  for (const [label, out, message] of cases) {
    const c = await hostile(out);
    await t.rejects(c.listTools(OPTS), { code: PLUGIN_ERROR, message, details: { reason: 'plugin_error', export: 'describe' } }, label);
  }
});

t.test(`a describe listing more than ${MAX_WASM_MCP_TOOLS} tools is refused`, async (t) => {
  const many = (n: number): string => JSON.stringify({ tools: Array.from({ length: n }, (_, i) => tool(`t${i}`)) });
  const max = await hostile(many(MAX_WASM_MCP_TOOLS));
  t.equal((await max.listTools(OPTS)).length, MAX_WASM_MCP_TOOLS, 'the cap itself is accepted');
  const over = await hostile(many(MAX_WASM_MCP_TOOLS + 44));
  await t.rejects(over.listTools(OPTS), { code: PLUGIN_ERROR, message: /describe: output lists 300 tools, more than the 256 allowed/, details: { check: 'tool_count', count: 300 } });
});

t.test('describe is normalized: unknown fields are dropped; an early servlet\'s single Tool is accepted', async (t) => {
  const extra = await hostile(JSON.stringify({ tools: [{ ...tool('a'), title: 'A', annotations: null, 'x-hidden': 'pinned?', _meta: { a: 1 } }], nextCursor: 'c' }));
  t.same(await extra.listTools(OPTS), [{ name: 'a', title: 'A', description: 'a', inputSchema: { type: 'object' } }]);
  const single = await hostile(JSON.stringify({ name: 'fetch', description: 'Fetch a URL', inputSchema: { type: 'object', properties: { url: { type: 'string' } } } }));
  t.same(await single.listTools(OPTS), [{ name: 'fetch', description: 'Fetch a URL', inputSchema: { type: 'object', properties: { url: { type: 'string' } } } }]);
});

t.test('call output that is not a CallToolResult is refused; a valid one is normalized', async (t) => {
  const cases: Array<[string, string | null, RegExp]> = [
    ['not JSON', '{"content": [', /call: output is not JSON/],
    ['no output at all', null, /call: output is empty, not JSON/],
    ['a string', '"done"', /call: output must be a CallToolResult object, got a string/],
    ['content not an array', JSON.stringify({ content: 'hi' }), /call: output's "content" must be an array, got a string/],
    ['content missing', JSON.stringify({ text: 'hi' }), /call: output's "content" must be an array, got nothing/],
    ['an item without type', JSON.stringify({ content: [{ text: 'hi' }] }), /content\[0\]\.type must be a non-empty string/],
    ['text content without text', JSON.stringify({ content: [{ type: 'text' }] }), /content\[0\] is text content without a "text" string/],
    ['an item that is a number', JSON.stringify({ content: [1] }), /content\[0\] must be an object, got a number/],
    ['isError not a boolean', JSON.stringify({ content: [], isError: 'yes' }), /"isError" must be a boolean, got a string/],
    ['too many items', JSON.stringify({ content: Array.from({ length: 1025 }, () => ({ type: 'text', text: '' })) }), /output has 1025 content items, more than the 1024 allowed/],
  ];
  for (const [label, out, message] of cases) {
    const c = await hostile(JSON.stringify({ tools: [tool('a')] }), out);
    await t.rejects(c.callTool('a', {}, OPTS), { code: PLUGIN_ERROR, message, details: { reason: 'plugin_error', export: 'call' } }, label);
  }
  const ok = await hostile('{}', JSON.stringify({ content: [{ type: 'image', data: 'iVBO', mimeType: 'image/png' }], isError: false, _meta: { x: 1 }, extra: true }));
  t.same(await ok.callTool('a', {}, OPTS), { content: [{ type: 'image', data: 'iVBO', mimeType: 'image/png' }] }, 'unknown fields dropped, isError false omitted');
});

t.test('sandbox failures keep their own codes; bad call arguments are refused before the sandbox', async (t) => {
  const trapping = await hostile('trap', 'trap');
  await t.rejects(trapping.listTools(OPTS), { code: 'TYRUM_ERR_SANDBOX_TRAP' });
  await t.rejects(trapping.callTool('a', {}, OPTS), { code: 'TYRUM_ERR_SANDBOX_TRAP' });
  await t.rejects(time.callTool('', {}, OPTS), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  await t.rejects(time.callTool('a', [] as unknown as Record<string, unknown>, OPTS), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /got an array/ });
  await t.rejects(time.callTool('a', { n: 1n }, OPTS), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /not JSON-serializable/ });
});
