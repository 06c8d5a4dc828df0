// The fs capabilities of the headless node inside the workspace: outputs that satisfy the
// built-in contracts, the evidence of each, the limits, compare-and-swap writes, and one
// dispatch at a time per workspace.
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatRegistry } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import t, { type Test } from 'tap';
import { BUILTIN_CAPABILITIES, CAPABILITY_ID_PATTERN, builtinCapability } from '../../../schemas/src/capabilities.js';
import { DEFAULT_FS_LIMITS, FsCapabilities, globToRegExp, type FsLimits } from '../../../sdk/node/headless/fs.js';
import { Workspace } from '../../../sdk/node/headless/workspace.js';
import { LINUX_ONLY, layout, rejectsCode } from './helpers.js';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
FormatRegistry.Set('date-time', (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(v) && !Number.isNaN(Date.parse(v)));
const check = Object.fromEntries(Object.entries(BUILTIN_CAPABILITIES).map(([id, c]) => [id, { input: TypeCompiler.Compile(c.input_schema), output: TypeCompiler.Compile(c.output_schema) }]));

// t.testdir() is one directory per test: a second setup in the same test shares the first's tree.
const roots = new WeakMap<Test, string>();
function setup(t: Test, limits: Partial<FsLimits> = {}) {
  const root = roots.get(t) ?? layout(t).ws;
  roots.set(t, root);
  const ws = new Workspace(root);
  t.teardown(() => ws.close());
  return { root, ws, fs: new FsCapabilities(ws, limits) };
}

/** The output matches the capability's output schema. */
function conforms(t: Test, id: keyof typeof BUILTIN_CAPABILITIES, output: unknown) {
  const c = check[id]!;
  t.ok(c.output.Check(output), `${id} output conforms to its contract ${JSON.stringify([...c.output.Errors(output)].slice(0, 2).map((e) => `${e.path}: ${e.message}`))}`);
}

t.test('the built-in contracts: ids match the capability id pattern, version 1, strict schemas', async (t) => {
  const re = new RegExp(CAPABILITY_ID_PATTERN);
  t.same(Object.keys(BUILTIN_CAPABILITIES).sort(), ['browser.location', 'browser.notify', 'fs.list', 'fs.read', 'fs.search', 'fs.write', 'shell.exec', 'sys.noop']);
  for (const [id, c] of Object.entries(BUILTIN_CAPABILITIES)) {
    t.equal(c.id, id);
    t.match(id, re, `${id} matches the id pattern`);
    t.equal(c.version, '1');
    t.equal(c.input_schema.additionalProperties, false, `${id} input is strict`);
    t.equal(c.output_schema.additionalProperties, false, `${id} output is strict`);
  }
  for (const bad of ['fs', 'FS.read', 'fs..read', '.fs.read', 'a.b.c.d.e.f', 'fs.read-x', 'x'.repeat(33) + '.y', 'node.fs.read@laptop']) t.notMatch(bad, re, `${bad} is not a capability id`);
  for (const good of ['fs.read', 'camera.capture_photo', 'a.b.c.d.e']) t.match(good, re);
  t.equal(BUILTIN_CAPABILITIES['fs.write'].idempotent, false);
  t.equal(BUILTIN_CAPABILITIES['shell.exec'].idempotent, false);
  t.equal(BUILTIN_CAPABILITIES['fs.read'].idempotent, true);
  t.equal(BUILTIN_CAPABILITIES['shell.exec'].default_timeout_ms, 60_000);
  t.equal(builtinCapability('fs.read'), BUILTIN_CAPABILITIES['fs.read']);
  t.equal(builtinCapability('toString'), undefined, 'no prototype keys');
  const w = check['fs.write']!.input;
  t.ok(w.Check({ path: 'a', content: 'x', expected_sha256: null }), 'expected_sha256 may be null');
  t.notOk(w.Check({ path: 'a', content: 'x', expected_sha256: 'ABC' }), 'expected_sha256 is lowercase hex');
  t.notOk(w.Check({ path: 'a', content: 'x', mode: 0o777 }), 'unknown keys are refused');
  t.notOk(check['shell.exec']!.input.Check({ argv: [] }), 'argv needs an element');
  t.notOk(check['fs.read']!.input.Check({ path: 'a', length: 524_289 }), 'read length is capped at 512 KiB');
  t.ok(check['sys.noop']!.output.Check({ ok: true }));
});

t.test('fs.read: content, whole-file digest, slices, encodings, evidence', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs } = setup(t);
  const r = await fs.read({ path: 'a.txt' });
  t.same(r.output, { content: 'hello\nworld\n', encoding: 'utf8', size: 12, sha256: sha('hello\nworld\n'), truncated: false });
  conforms(t, 'fs.read', r.output);
  t.match(r.evidence, { path: 'a.txt', sha256: sha('hello\nworld\n'), size: 12, bytes_returned: 12, duration_ms: Number });
  const s = await fs.read({ path: 'a.txt', offset: 6, length: 3 });
  t.same(s.output, { content: 'wor', encoding: 'utf8', size: 12, sha256: sha('hello\nworld\n'), truncated: true }, 'a slice; digest of the whole file');
  t.equal(s.evidence.bytes_returned, 3);
  t.equal((await fs.read({ path: 'a.txt', offset: 100 })).output.content, '', 'past the end: empty');
  const bin = Buffer.from([0xff, 0x00, 0xfe, 0x41]);
  writeFileSync(join(root, 'bin'), bin);
  const b = await fs.read({ path: 'bin' });
  t.same(b.output, { content: bin.toString('base64'), encoding: 'base64', size: 4, sha256: sha(bin), truncated: false }, 'invalid UTF-8 comes back as base64');
  t.equal((await fs.read({ path: 'a.txt', encoding: 'base64' })).output.content, Buffer.from('hello\nworld\n').toString('base64'));
  const big = Buffer.alloc(600 * 1024, 0x61);
  writeFileSync(join(root, 'big'), big);
  const g = await fs.read({ path: 'big' });
  t.equal(g.evidence.bytes_returned, DEFAULT_FS_LIMITS.maxReadBytes, 'default length is the 512 KiB cap');
  t.equal(g.output.truncated, true);
  t.equal(g.output.sha256, sha(big));
  t.equal(g.output.size, big.length);
  await rejectsCode(t, fs.read({ path: 'big', length: DEFAULT_FS_LIMITS.maxReadBytes + 1 }), 'invalid_request', undefined, 'length over the cap');
  await rejectsCode(t, fs.read({ path: 'a.txt', extra: 1 }), 'invalid_request', undefined, 'unknown argument');
  await rejectsCode(t, fs.read({}), 'invalid_request', undefined, 'missing path');
  await rejectsCode(t, fs.read('a.txt'), 'invalid_request', undefined, 'not an object');
  const small = setup(t, { maxReadBytes: 4 }).fs;
  t.equal((await small.read({ path: 'a.txt' })).output.content, 'hell', 'the read cap is a constructor option');
});

t.test('fs.write: atomic create and replace, compare-and-swap, before/after evidence, limits', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs } = setup(t);
  const c = await fs.write({ path: 'new.txt', content: 'one\n', expected_sha256: null });
  t.same(c.output, { size: 4, sha256: sha('one\n'), created: true });
  conforms(t, 'fs.write', c.output);
  t.match(c.evidence, { path: 'new.txt', before: { exists: false }, after: { sha256: sha('one\n'), size: 4 }, duration_ms: Number });
  t.equal(lstatSync(join(root, 'new.txt')).mode & 0o777, 0o644);
  await rejectsCode(t, fs.write({ path: 'new.txt', content: 'two\n', expected_sha256: null }), 'conflict', 'exists', 'null: must not exist');
  const err = await rejectsCode(t, fs.write({ path: 'new.txt', content: 'two\n', expected_sha256: sha('other') }), 'conflict', 'digest_mismatch', 'wrong digest');
  t.equal(err?.details?.actual_sha256, sha('one\n'), 'the conflict names the current digest');
  t.equal(readFileSync(join(root, 'new.txt'), 'utf8'), 'one\n', 'conflicts change nothing');
  const r = await fs.write({ path: 'new.txt', content: 'two\n', expected_sha256: sha('one\n') });
  t.same(r.output, { size: 4, sha256: sha('two\n'), created: false });
  t.same(r.evidence.before, { exists: true, type: 'file', sha256: sha('one\n'), size: 4 });
  await rejectsCode(t, fs.write({ path: 'absent.txt', content: 'x', expected_sha256: sha('x') }), 'conflict', 'digest_mismatch', 'a digest for a file that does not exist');
  const bin = Buffer.from([0, 1, 2, 255]);
  const b = await fs.write({ path: 'bin', content: bin.toString('base64'), encoding: 'base64' });
  t.same(readFileSync(join(root, 'bin')), bin);
  t.equal(b.output.sha256, sha(bin));
  await rejectsCode(t, fs.write({ path: 'bin', content: 'not base64!', encoding: 'base64' }), 'invalid_request', undefined, 'bad base64');
  await rejectsCode(t, fs.write({ path: 'big', content: 'x'.repeat(DEFAULT_FS_LIMITS.maxWriteBytes + 1) }), 'invalid_request', 'too_large', 'over the write cap');
  await rejectsCode(t, fs.write({ path: 'x', content: 'x', expected_sha256: 'nothex' }), 'invalid_request', undefined, 'bad expected_sha256');
  t.same(readdirSync(root).filter((n) => n.startsWith('.tyrum-tmp-')), [], 'no temp files left behind, even after refusals');
  const small = setup(t, { maxWriteBytes: 3 }).fs;
  await rejectsCode(t, small.write({ path: 'y', content: 'four' }), 'invalid_request', 'too_large', 'the write cap is a constructor option');
});

t.test('fs.list: sorted entries with types, truncation, evidence', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs } = setup(t);
  const l = await fs.list({});
  t.same(l.output.entries.map((e) => [e.name, e.type, e.size]), [['a.txt', 'file', 12], ['sub', 'dir', l.output.entries[1]!.size]]);
  t.equal(l.output.truncated, false);
  conforms(t, 'fs.list', l.output);
  t.match(l.evidence, { path: '.', entries: 2, duration_ms: Number });
  t.equal((await fs.list({ path: 'sub' })).output.entries[0]!.name, 'b.txt');
  for (let i = 0; i < 5; i++) writeFileSync(join(root, 'sub', `f${i}`), '');
  const s = await fs.list({ path: 'sub', max_entries: 3 });
  t.equal(s.output.entries.length, 3);
  t.equal(s.output.truncated, true);
  const capped = setup(t, { maxListEntries: 1 }).fs;
  const c = await capped.list({ max_entries: 500 });
  t.equal(c.output.entries.length, 1, 'the option caps max_entries');
  t.equal(c.output.truncated, true);
  await rejectsCode(t, fs.list({ path: 'a.txt' }), 'invalid_request', undefined, 'listing a file');
  await rejectsCode(t, fs.list({ path: 'nope' }), 'not_found');
});

t.test('fs.search: literal text, line numbers, glob, binary files skipped, limits', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs } = setup(t);
  mkdirSync(join(root, 'sub', 'deep'));
  writeFileSync(join(root, 'sub', 'deep', 'c.md'), 'x\nneedle (.*) here\r\n');
  writeFileSync(join(root, 'sub', 'n.txt'), 'needle (.*) one\nno\nneedle (.*) two\n');
  writeFileSync(join(root, 'binary'), Buffer.concat([Buffer.from('needle (.*)'), Buffer.from([0])]));
  const s = await fs.search({ query: 'needle (.*)' });
  t.same(s.output.matches, [
    { path: 'sub/n.txt', line: 1, text: 'needle (.*) one' },
    { path: 'sub/n.txt', line: 3, text: 'needle (.*) two' },
    { path: 'sub/deep/c.md', line: 2, text: 'needle (.*) here' },
  ], 'breadth first, sorted, literal (not a regex), CR stripped, binary skipped');
  t.equal(s.output.truncated, false);
  conforms(t, 'fs.search', s.output);
  t.match(s.evidence, { path: '.', files_scanned: s.output.files_scanned, duration_ms: Number });
  t.same((await fs.search({ query: 'needle', glob: '*.md' })).output.matches.map((m) => m.path), ['sub/deep/c.md'], 'a glob without / matches names');
  t.same((await fs.search({ query: 'needle', glob: 'sub/*.txt' })).output.matches.map((m) => m.path), ['sub/n.txt', 'sub/n.txt'], 'a glob with / matches the relative path');
  t.same((await fs.search({ query: 'needle', path: 'sub', glob: 'deep/**' })).output.matches.map((m) => m.path), ['sub/deep/c.md'], 'relative to the search path');
  const one = await fs.search({ query: 'needle', max_results: 1 });
  t.equal(one.output.matches.length, 1);
  t.equal(one.output.truncated, true);
  const few = setup(t, { maxSearchFiles: 1 }).fs;
  t.equal((await few.search({ query: 'e' })).output.truncated, true, 'files scanned is capped');
  const fast = setup(t, { searchTimeMs: -1 }).fs;
  const timed = await fast.search({ query: 'e' });
  t.equal(timed.output.truncated, true, 'the time limit truncates');
  t.equal(timed.output.files_scanned, 0);
  await rejectsCode(t, fs.search({ query: '' }), 'invalid_request', undefined, 'empty query');
  t.ok(globToRegExp('a/**/b?.t*').test('a/x/y/bc.ts'));
  t.notOk(globToRegExp('*.ts').test('a/b.ts'), '* does not cross /');
  t.ok(globToRegExp('(x)+.ts').test('(x)+.ts'), 'regex characters are literal');
});

t.test('dispatches on one workspace run one at a time', { skip: LINUX_ONLY }, async (t) => {
  const { ws, fs } = setup(t);
  const order: string[] = [];
  let release!: () => void;
  const held = ws.exclusive(async () => {
    order.push('held');
    await new Promise<void>((r) => (release = r));
    order.push('released');
  });
  const read = fs.read({ path: 'a.txt' }).then(() => order.push('read'));
  const failing = fs.read({ path: 'missing' }).catch(() => order.push('failed'));
  const list = fs.list({}).then(() => order.push('list'));
  await new Promise((r) => setTimeout(r, 50));
  t.same(order, ['held'], 'nothing ran while the workspace was held');
  release();
  await Promise.all([held, read, failing, list]);
  t.same(order, ['held', 'released', 'read', 'failed', 'list'], 'in order, and a failure does not stop the queue');
});
