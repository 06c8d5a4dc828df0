// notes, built from source (plugins/notes) and run in a real SandboxPool with a kv host API backed
// by a Map: add/list/get/delete round trips (non-ASCII included), outputs that satisfy the manifest's
// output schemas, a full quota refused as a coded plugin error that changes nothing, and the
// manifest declaring exactly the risks its requests and tools imply.
import t from 'tap';
import { Ajv, type ValidateFunction } from 'ajv';
import { validate } from '../../core/protocol/validate.js';
import { impliedRisks } from '../../manifests/capabilities.js';
import { readPluginSource } from '../../manifests/index.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxReason } from '../../sandbox/index.js';
import { dec, enc, label, loadBuilt, MapKv, readBuilt, readSourceManifest, sha256 } from './helpers.js';

const plugin = readBuilt('notes');

// The tools' schemas, compiled by an ajv of this test's own (strict: a typo in the manifest fails).
const ajv = new Ajv({ strict: true, allErrors: true });
const schemas = new Map<string, { input: ValidateFunction; output: ValidateFunction }>(
  plugin.manifest.contributes.tools.map((tool) => [tool.id, { input: ajv.compile(tool.input_schema), output: ajv.compile(tool.output_schema) }]),
);

type Json = Record<string, unknown>;
type Tool = 'add_note' | 'list_notes' | 'get_note' | 'delete_note';

const utf8 = (s: string): number => Buffer.byteLength(s);

/** A store that refuses writes (not deletes) of the keys `refuse` names, as a full quota would. */
class RefusingKv extends MapKv {
  constructor(readonly refuse: (key: string) => boolean) {
    super();
  }
  override set(key: string, value: Uint8Array | null): boolean {
    if (value !== null && this.refuse(key)) {
      this.sets++;
      return false;
    }
    return super.set(key, value);
  }
}

const QUOTA = plugin.manifest.requests?.kv?.quota_bytes ?? 0;
const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());

const stores = new Map<string, MapKv>();
/** Load the built plugin under `key` with `kv` as its storage (none: kv not granted). */
async function load(key: string, kv?: MapKv): Promise<void> {
  if (kv !== undefined) stores.set(key, kv);
  await loadBuilt(pool, key, plugin, kv === undefined ? {} : { hostApi: { kv } });
}
const main = new MapKv(QUOTA);
const ready = load('notes', main);

/** Call a tool with schema-valid args; its output must satisfy the tool's output schema. */
async function call(tool: Tool, args: Json, key = 'notes'): Promise<Json> {
  const s = schemas.get(tool);
  if (s === undefined) throw new Error(`no tool ${tool}`);
  if (!s.input(args)) throw new Error(`test bug: args do not satisfy ${tool}'s input schema: ${JSON.stringify(s.input.errors)}`);
  await ready;
  const r = await pool.call(key, tool, enc(args));
  const raw = dec(r.output);
  const out = JSON.parse(raw) as Json;
  if (!s.output(out)) throw new Error(`${tool} output violates its schema: ${JSON.stringify(s.output.errors)} in ${raw.slice(0, 200)}`);
  return out;
}

/** Call with any input (JSON value or raw text) and return the error the call fails with. */
async function failure(tool: Tool, input: unknown, key = 'notes'): Promise<Error> {
  await ready;
  return pool.call(key, tool, enc(input as Json)).then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e as Error,
  );
}

const add = (title: string, body: string, key?: string) => call('add_note', { title, body }, key);
const list = async (args: Json = {}, key?: string) => (await call('list_notes', args, key)).notes as Array<{ id: string; title: string }>;
const get = (id: string, key?: string) => call('get_note', { id }, key);
const del = async (id: string, key?: string) => (await call('delete_note', { id }, key)).deleted as boolean;

// --- the package -----------------------------------------------------------------------------------

t.test('the build directory is an installable plugin: manifest contract, digest, declared risks', async (t) => {
  t.same(validate(PluginManifest, plugin.manifest), [], 'build/tyrum.plugin.json satisfies the manifest contract');
  t.equal(plugin.manifest.wasm.path, 'plugin.wasm');
  t.equal(plugin.manifest.wasm.sha256, sha256(plugin.wasm), 'the manifest digest is the sha256 of build/plugin.wasm');
  const source = readSourceManifest('notes');
  t.same(validate(PluginManifest, source), [], 'the source manifest satisfies the contract too');
  t.same(source.wasm, { path: 'build/plugin.wasm', sha256: '0'.repeat(64) }, 'the source keeps the build path and a placeholder digest');
  t.same({ ...plugin.manifest, wasm: source.wasm }, source, 'the build manifest is the source manifest with only wasm changed');
  t.match(plugin.manifest, { id: 'notes', version: '1.0.0', engines: { tyrum: '^1.0.0' } });
  t.same(plugin.manifest.requests, { kv: { quota_bytes: 1048576 } }, 'asks for 1 MiB of kv storage and nothing else');
  t.same([...(plugin.manifest.risk ?? [])].sort(), ['state_changing', 'storage']);
  t.same(impliedRisks(plugin.manifest).sort(), [...(plugin.manifest.risk ?? [])].sort(), 'every implied risk is declared, and only those');
  t.same(
    Object.fromEntries(plugin.manifest.contributes.tools.map((tool) => [tool.id, tool.effect])),
    { add_note: 'state_changing', list_notes: 'read_only', get_note: 'read_only', delete_note: 'state_changing' },
    'effects',
  );
  for (const tool of plugin.manifest.contributes.tools) {
    t.equal(tool.export, tool.id, `${tool.id} is the export of the same name`);
    t.equal(tool.input_schema.additionalProperties, false, `${tool.id}: input schema is closed`);
    t.equal(tool.output_schema.additionalProperties, false, `${tool.id}: output schema is closed`);
  }
  // What an installer does with the directory: contract, rules (risks, safe schemas), digest, module checks.
  const src = await readPluginSource(plugin.dir);
  t.equal(src.manifest.id, 'notes', 'readPluginSource accepts build/');
});

t.test('the module passes the sandbox load checks: kernel, tyrum:host/v1 kv and env.abort only', async (t) => {
  await ready;
  const info = await loadBuilt(pool, 'notes-inspect', plugin, { hostApi: { kv: new MapKv() } });
  t.equal(info.sha256, plugin.manifest.wasm.sha256);
  for (const imp of info.imports) t.ok(imp.startsWith('extism:host/env.') || imp === 'env.abort' || imp.startsWith('tyrum:host/v1.kv_'), `allowed import ${imp}`);
  t.ok(info.imports.includes('tyrum:host/v1.kv_get'), 'imports kv_get');
  t.ok(info.imports.includes('tyrum:host/v1.kv_set'), 'imports kv_set');
  t.notOk(info.imports.some((i) => i.startsWith('extism:host/env.http') || i.startsWith('wasi')), 'no network, no WASI');
  t.match(info.memory, { rewritten: true, maxPages: 256 }, 'its memory is capped by the sandbox (16 MiB default)');
});

// --- behaviour -------------------------------------------------------------------------------------

const TITLES = ['Shopping list', 'Grüße aus Köln 🇩🇪', '会议记录：第三季度', 'שלום — עולם', 'cafe\u0301 "quoted" \\ back\tslash', '👨‍👩‍👧 family 😀'];

t.test('add, list, get, delete: a round trip with non-ASCII titles and bodies', async (t) => {
  const added: Json[] = [];
  for (const [i, title] of TITLES.entries()) added.push(await add(title, `body ${i}: ${title}\nline two ✓`));
  t.same(
    added,
    TITLES.map((title, i) => ({ id: `n${i + 1}`, title, created_seq: i + 1 })),
    'ids are "n" + a counter, titles come back exactly',
  );

  t.same(await list(), [...added].reverse().map(({ id, title }) => ({ id, title })), 'list: newest first');
  t.same(await list({ limit: 2 }), [{ id: 'n6', title: TITLES[5] }, { id: 'n5', title: TITLES[4] }], 'list: limit');
  t.same(await list({ limit: 100 }), await list(), 'no limit means 100');

  for (const [i, title] of TITLES.entries()) {
    t.same(await get(`n${i + 1}`), { id: `n${i + 1}`, title, body: `body ${i}: ${title}\nline two ✓` }, `get ${label(title)}`);
  }

  // What is in the store: the documented layout.
  const ids = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
  t.same([...main.map.keys()].sort(), ['index', 'seq', ...ids.map((id) => `body:${id}`), ...ids.map((id) => `note:${id}`)].sort());
  t.equal(main.text('seq'), '6', 'seq: the counter');
  t.same(JSON.parse(main.text('index') ?? ''), ids, 'index: the ids, oldest first');
  t.same(JSON.parse(main.text('note:n2') ?? ''), { title: TITLES[1], created_seq: 2 }, 'note:<id>: title and sequence number');
  t.same(JSON.parse(main.text('body:n2') ?? ''), `body 1: ${TITLES[1]}\nline two ✓`, 'body:<id>: the body, a JSON string');

  t.equal(await del('n3'), true, 'delete n3');
  t.equal(await del('n3'), false, 'deleting it again: false');
  t.equal(await del('n99'), false, 'deleting an id never used: false');
  t.notOk(main.map.has('note:n3') || main.map.has('body:n3'), 'the note is gone from the store');
  t.same(JSON.parse(main.text('index') ?? ''), ['n1', 'n2', 'n4', 'n5', 'n6']);
  t.same((await list()).map((n) => n.id), ['n6', 'n5', 'n4', 'n2', 'n1'], 'list without it');

  const e = await failure('get_note', { id: 'n3' });
  t.equal(sandboxReason(e), 'plugin_error', 'get of a deleted note is a coded plugin error');
  t.equal(e.message, 'plugin reported an error: no note n3');
  t.match((await failure('get_note', { id: 'n12345' })).message, /: no note n12345$/, 'get of an id never used');

  t.same(await add('after delete', ''), { id: 'n7', title: 'after delete', created_seq: 7 }, 'ids are never reused; an empty body is fine');
  t.same(await get('n7'), { id: 'n7', title: 'after delete', body: '' });
});

t.test('outputs are exact UTF-8 bytes (as-pdk outputString would cut non-ASCII short)', async (t) => {
  await ready;
  const title = 'é😀你 "q" \\ \u2028 \u0001';
  const body = 'Ünïcödé 🇫🇷 日本語 \r\n\t end';
  const { id } = await add(title, body);
  const r = await pool.call('notes', 'get_note', enc({ id }));
  const expected = JSON.stringify({ id, title, body });
  t.equal(dec(r.output), expected, 'byte for byte what JSON.stringify writes');
  t.equal(r.output.byteLength, utf8(expected));
  t.ok(await del(id as string));
});

t.test('lone surrogates survive the round trip (escaped in the output, so it stays valid UTF-8)', async (t) => {
  const title = 'a\ud800b\udc00c';
  const { id } = await add(title, '\udbff');
  t.same(await get(id as string), { id, title, body: '\udbff' });
  t.ok(await del(id as string));
});

t.test('length limits count characters (code points), as the schemas do', async (t) => {
  const s = schemas.get('add_note');
  const title200 = '😀'.repeat(200); // 400 UTF-16 units, 800 bytes
  const body10k = '你'.repeat(10000);
  const { id } = await add(title200, body10k);
  t.same(await get(id as string), { id, title: title200, body: body10k }, '200-character title and 10,000-character body kept whole');
  t.ok(await del(id as string));

  const cases: Array<[Json, RegExp]> = [
    [{ title: '😀'.repeat(201), body: '' }, /"title" has 201 characters, more than the 200 allowed/],
    [{ title: 'x', body: 'y'.repeat(10001) }, /"body" has 10001 characters, more than the 10000 allowed/],
    [{ title: '', body: 'x' }, /"title" must not be empty/],
  ];
  for (const [args, message] of cases) {
    const e = await failure('add_note', args);
    t.equal(sandboxReason(e), 'plugin_error');
    t.match(e.message, /^plugin reported an error: invalid input: /);
    t.match(e.message, message);
    t.notOk(s?.input(args), 'the input schema refuses it too');
  }
});

t.test('list_notes: newest first, at most 100, limit honoured', async (t) => {
  const kv = new MapKv(QUOTA);
  await load('many', kv);
  for (let i = 1; i <= 105; i++) await add(`note ${i}`, '', 'many');
  const all = await list({}, 'many');
  t.equal(all.length, 100, 'at most 100 without a limit');
  t.same(all[0], { id: 'n105', title: 'note 105' });
  t.same(all[99], { id: 'n6', title: 'note 6' });
  t.same((await list({ limit: 1 }, 'many')).map((n) => n.id), ['n105']);
  t.same((await list({ limit: 3 }, 'many')).map((n) => n.id), ['n105', 'n104', 'n103']);
  const empty = new MapKv();
  await load('empty', empty);
  t.same(await list({}, 'empty'), [], 'an empty store lists nothing');
  t.equal(empty.sets, 0, 'listing writes nothing');
});

t.test('state lives in kv, not in the instance: another instance on the same store sees it', async (t) => {
  await ready;
  await load('notes-again', main);
  t.same(await list({}, 'notes-again'), await list({}, 'notes'));
  const { id } = await add('from the second instance', 'x', 'notes-again');
  t.same((await get(id as string, 'notes')).title, 'from the second instance');
  t.ok(await del(id as string, 'notes'));
});

// --- quota and storage problems --------------------------------------------------------------------

t.test('a full quota refuses add_note with a coded plugin error and changes nothing', async (t) => {
  const kv = new MapKv(300);
  await load('small', kv);
  const body = 'b'.repeat(100);
  t.same(await add('first', body, 'small'), { id: 'n1', title: 'first', created_seq: 1 });
  const before = kv.snapshot();
  const used = kv.used();
  t.ok(used <= 300, `${used} bytes used`);

  const e = await failure('add_note', { title: 'second', body }, 'small');
  t.equal(sandboxReason(e), 'plugin_error', 'a quota refusal is a plugin_error');
  t.equal(e.message, 'plugin reported an error: storage quota exceeded: the note was not saved; delete notes to free space');
  t.same(kv.snapshot(), before, 'the refused add left the store as it was');
  t.same((await list({}, 'small')).map((n) => n.id), ['n1']);

  t.equal(await del('n1', 'small'), true);
  t.same(await add('second', body, 'small'), { id: 'n2', title: 'second', created_seq: 2 }, 'after a delete there is room again (and the refused id was not used)');
});

t.test('a refusal at any step of add_note is undone', async (t) => {
  for (const refused of ['seq', 'body:', 'note:', 'index']) {
    const kv: RefusingKv = new RefusingKv((key): boolean => key.startsWith(refused) && kv.map.has('index'));
    const key = `refuse-${refused.replace(':', '')}`;
    await load(key, kv);
    t.same(await add('kept', 'x', key), { id: 'n1', title: 'kept', created_seq: 1 }, `${refused}: the first add passes`);
    const before = kv.snapshot();
    const e = await failure('add_note', { title: 'refused', body: 'y' }, key);
    t.equal(sandboxReason(e), 'plugin_error');
    t.match(e.message, /storage quota exceeded/);
    t.same(kv.snapshot(), before, `refused writing ${refused}: store unchanged`);
  }
});

t.test('storage limits: 10,000 notes at most; listing skips a bounded number of missing notes', async (t) => {
  const kv = new MapKv();
  kv.put('seq', '10000');
  kv.put('index', JSON.stringify(Array.from({ length: 10000 }, (_, i) => `n${i + 1}`)));
  kv.put('note:n1', JSON.stringify({ title: 'the only one', created_seq: 1 }));
  kv.put('body:n1', '""');
  await load('full', kv);
  const e = await failure('add_note', { title: 'one more', body: '' }, 'full');
  t.equal(sandboxReason(e), 'plugin_error');
  t.match(e.message, /too many notes: at most 10000 are kept; delete some first/);
  // 9,999 listed ids have no note (as after interrupted deletes): list stays within its host-call budget.
  t.same(await list({}, 'full'), [], 'the missing notes are skipped, and the search stops before n1');
  t.same(await get('n1', 'full'), { id: 'n1', title: 'the only one', body: '' }, 'n1 is there');
  t.equal(await del('n1', 'full'), true);
  t.same(await add('one more', '', 'full'), { id: 'n10001', title: 'one more', created_seq: 10001 });
});

t.test('corrupt storage is reported, never misread', async (t) => {
  const kv = new MapKv();
  await load('corrupt', kv);
  kv.put('index', '{"not": "an array"}');
  t.match((await failure('list_notes', {}, 'corrupt')).message, /storage: the note index is corrupt/);
  kv.put('index', '["n1", "../etc"]');
  t.match((await failure('add_note', { title: 'x', body: '' }, 'corrupt')).message, /storage: the note index is corrupt/);
  kv.put('index', '["n1"]');
  kv.put('note:n1', '{"title": 1}');
  t.match((await failure('get_note', { id: 'n1' }, 'corrupt')).message, /storage: note n1 is corrupt/);
  t.match((await failure('list_notes', {}, 'corrupt')).message, /storage: note n1 is corrupt/);
  kv.put('note:n1', '{"title": "fine", "created_seq": 1}');
  t.same(await list({}, 'corrupt'), [{ id: 'n1', title: 'fine' }]);
  t.match((await failure('get_note', { id: 'n1' }, 'corrupt')).message, /storage: note n1 is corrupt/, 'its body is missing');
  kv.put('body:n1', '"unterminated');
  t.match((await failure('get_note', { id: 'n1' }, 'corrupt')).message, /storage: note n1 is corrupt/, 'its body is not a JSON string');
  kv.put('seq', 'x1');
  const e = await failure('add_note', { title: 'x', body: '' }, 'corrupt');
  t.equal(sandboxReason(e), 'plugin_error', 'a coded plugin error');
  t.match(e.message, /storage: the note counter is corrupt/);
  t.same(kv.snapshot(), { index: '["n1"]', 'note:n1': '{"title": "fine", "created_seq": 1}', 'body:n1': '"unterminated', seq: 'x1' }, 'nothing was written');
});

t.test('without a kv grant every tool fails with capability_denied', async (t) => {
  await load('no-kv');
  for (const [tool, args] of [['add_note', { title: 'x', body: '' }], ['list_notes', {}], ['get_note', { id: 'n1' }], ['delete_note', { id: 'n1' }]] as Array<[Tool, Json]>) {
    const e = await failure(tool, args, 'no-kv');
    t.equal(sandboxReason(e), 'capability_denied', tool);
    t.match(e.message, /not granted key-value storage/);
  }
});

t.test('bad input is a coded plugin error with the plugin\'s message; the schemas refuse it too', async (t) => {
  const before = main.snapshot();
  const cases: Array<[Tool, unknown, RegExp, boolean]> = [
    ['add_note', 'not json', /invalid input: not valid JSON/, false],
    ['add_note', { title: 'x' }, /"body" is required/, true],
    ['add_note', { body: 'x' }, /"title" is required/, true],
    ['add_note', { title: 5, body: '' }, /"title" must be a string, got a number/, true],
    ['add_note', { title: 'x', body: '', tags: [] }, /unknown key "tags" \(allowed: title, body\)/, true],
    ['list_notes', { limit: 0 }, /"limit" must be an integer from 1 to 100/, true],
    ['list_notes', { limit: 101 }, /"limit" must be an integer from 1 to 100/, true],
    ['list_notes', { limit: 1.5 }, /"limit" must be an integer from 1 to 100/, true],
    ['list_notes', { limit: '5' }, /"limit" must be an integer, got a string/, true],
    ['list_notes', { limit: null }, /"limit" must be an integer, got null/, true],
    ['list_notes', { offset: 1 }, /unknown key "offset" \(allowed: limit\)/, true],
    ['list_notes', [], /expected a JSON object, got an array/, true],
    ['get_note', {}, /"id" is required/, true],
    ['get_note', { id: '1' }, /"id" must be a note id like "n1"/, true],
    ['get_note', { id: 'n01' }, /"id" must be a note id/, true],
    ['get_note', { id: 'n1/../x' }, /"id" must be a note id/, true],
    ['get_note', { id: `n${'9'.repeat(16)}` }, /"id" must be a note id/, true],
    ['delete_note', { id: 'note:n1' }, /"id" must be a note id/, true],
    ['delete_note', { id: 'n1', all: true }, /unknown key "all" \(allowed: id\)/, true],
  ];
  for (const [tool, input, message, schemaParsable] of cases) {
    const e = await failure(tool, input);
    t.equal(sandboxReason(e), 'plugin_error', `${tool} ${label(typeof input === 'string' ? input : JSON.stringify(input))}`);
    t.match(e.message, /^plugin reported an error: invalid input: /);
    t.match(e.message, message);
    if (schemaParsable) t.notOk(schemas.get(tool)?.input(input), 'the input schema refuses it too');
  }
  t.ok(schemas.get('list_notes')?.input({ limit: 2.0 }), 'the schema takes 2.0 as an integer');
  t.same(await list({ limit: 2.0 }), (await list()).slice(0, 2), 'and so does the plugin');
  t.same(main.snapshot(), before, 'no refused call changed the store');
});

t.test('many calls with large notes: memory stays within the cap and stops growing', async (t) => {
  const kv = new MapKv();
  await load('big', kv);
  const body = '漢字かな😀'.repeat(2000); // 10,000 characters, 32,000 bytes
  const pages: number[] = [];
  for (let i = 1; i <= 120; i++) {
    await add(`big ${i}`, body, 'big');
    const r = await pool.call('big', i % 2 === 0 ? 'list_notes' : 'get_note', enc(i % 2 === 0 ? {} : { id: `n${i}` }));
    pages.push(r.usage.mem_pages_peak ?? -1);
  }
  const r = await pool.call('big', 'list_notes', enc({}));
  t.equal((JSON.parse(dec(r.output)) as { notes: unknown[] }).notes.length, 100);
  t.ok(r.usage.alloc_bytes < 64 * 1024, `listing 100 notes reads their titles, not their bodies (${r.usage.alloc_bytes} bytes of kernel memory)`);
  t.equal((await get('n120', 'big')).body, body);
  t.ok(Math.max(...pages) <= 256, `peak ${Math.max(...pages)} pages`);
  t.equal(Math.max(...pages.slice(-20)), Math.max(...pages.slice(-40, -20)), `memory stable at ${pages[pages.length - 1]} pages`);
});
