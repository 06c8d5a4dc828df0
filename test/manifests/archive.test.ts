// Packed plugins: a deterministic round trip, and hostile archives refused before extraction.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isTyrumError } from '../../core/errors/index.js';
import { ARCHIVE_MAX_ENTRIES, packPlugin, readPluginArchive, readPluginSource } from '../../manifests/index.js';
import { goodManifest, sha256, tarball, wat, writePlugin, type TarEntry } from './helpers.js';

async function goodFiles(): Promise<{ manifest: Buffer; wasm: Buffer }> {
  const wasm = await wat('echo');
  return { manifest: Buffer.from(JSON.stringify(goodManifest(sha256(wasm)))), wasm };
}

t.test('pack then read gives the directory\'s exact digests', async (t) => {
  const root = t.testdir();
  const dir = await writePlugin(join(root, 'plugin'), { edit: (m) => ((m.wasm as { path: string }).path = 'build/plugin.wasm') });
  // Files that are not part of the plugin are left out of the archive.
  writeFileSync(join(dir, 'README.md'), 'notes');
  const fromDir = await readPluginSource(dir);
  const tgz = await packPlugin(dir);
  const path = join(root, 'echo-tools-1.0.0.tgz');
  writeFileSync(path, tgz);
  const fromArchive = await readPluginSource(path);
  t.equal(fromArchive.manifestSha256, fromDir.manifestSha256);
  t.equal(fromArchive.wasmSha256, fromDir.wasmSha256);
  t.same(fromArchive.manifest, fromDir.manifest);
  const fromBytes = await readPluginArchive(readFileSync(path));
  t.equal(fromBytes.wasmSha256, fromDir.wasmSha256);
});

t.test('packing is deterministic: the same plugin gives the same bytes whatever the file times', async (t) => {
  const root = t.testdir();
  const a = await writePlugin(join(root, 'a'));
  const first = await packPlugin(a);
  await new Promise((r) => setTimeout(r, 20));
  const b = await writePlugin(join(root, 'b'));
  const second = await packPlugin(b);
  t.equal(sha256(first), sha256(second));
});

t.test('packing refuses a plugin that does not pass its checks', async (t) => {
  const dir = await writePlugin(t.testdir(), { edit: (m) => ((m.engines as { tyrum: string }).tyrum = '^9.0.0') });
  const err = await packPlugin(dir).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_INCOMPATIBLE'));
});

t.test('an uncompressed tar with ./-prefixed entries and directory entries is accepted', async (t) => {
  const { manifest, wasm } = await goodFiles();
  const tar = tarball([{ path: './', type: 'Directory' }, { path: './tyrum.plugin.json', data: manifest }, { path: './plugin.wasm', data: wasm }], false);
  const src = await readPluginArchive(tar);
  t.equal(src.wasmSha256, sha256(wasm));
});

interface HostileCase {
  name: string;
  entries: (files: { manifest: Buffer; wasm: Buffer }) => TarEntry[];
  message: RegExp;
}

const HOSTILE: HostileCase[] = [
  { name: 'a ../ entry', entries: (f) => [{ path: 'tyrum.plugin.json', data: f.manifest }, { path: '../evil.wasm', data: f.wasm }], message: /entry "\.\.\/evil\.wasm" escapes the archive/ },
  { name: 'a nested .. entry', entries: (f) => [{ path: 'a/../../evil', data: f.wasm }], message: /escapes the archive/ },
  { name: 'an absolute path', entries: (f) => [{ path: '/etc/cron.d/evil', data: f.wasm }], message: /entry "\/etc\/cron\.d\/evil" has an absolute path/ },
  { name: 'a symbolic link', entries: (f) => [{ path: 'tyrum.plugin.json', data: f.manifest }, { path: 'plugin.wasm', type: 'SymbolicLink', linkpath: '/etc/passwd' }], message: /entry "plugin\.wasm" is a symbolic link; only regular files and directories are allowed/ },
  { name: 'a hard link', entries: (f) => [{ path: 'tyrum.plugin.json', data: f.manifest }, { path: 'plugin.wasm', type: 'Link', linkpath: 'tyrum.plugin.json' }], message: /is a hard link/ },
  { name: 'a character device', entries: () => [{ path: 'dev', type: 'CharacterDevice' }], message: /entry "dev" is a character device/ },
  { name: 'a FIFO', entries: () => [{ path: 'pipe', type: 'FIFO' }], message: /is a FIFO/ },
  { name: 'a huge entry count', entries: () => Array.from({ length: 5000 }, (_, i) => ({ path: `f${i}`, data: Buffer.from('x') })), message: new RegExp(`more than ${ARCHIVE_MAX_ENTRIES} entries`) },
  { name: 'the same path twice', entries: (f) => [{ path: 'tyrum.plugin.json', data: f.manifest }, { path: './tyrum.plugin.json', data: Buffer.from('{}') }], message: /entry "tyrum\.plugin\.json" appears twice/ },
  { name: 'a backslash path', entries: (f) => [{ path: '..\\evil', data: f.wasm }], message: /contains a control character or backslash/ },
];

t.test('hostile archives are refused, naming the entry and the cause', async (t) => {
  const files = await goodFiles();
  for (const c of HOSTILE) {
    const start = performance.now();
    const err = await readPluginArchive(tarball(c.entries(files))).catch((e: unknown) => e);
    const ms = performance.now() - start;
    t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'), `${c.name}: code (${String(err)})`);
    t.match((err as Error).message, c.message, `${c.name}: ${(err as Error).message}`);
    // A hang guard, not a benchmark: catastrophic work would take far longer than this.
    t.ok(ms < 5000, `${c.name}: refused in ${ms.toFixed(1)} ms`);
  }
});

t.test('an archive without a manifest, or with only junk, is refused', async (t) => {
  const { wasm } = await goodFiles();
  const missing = await readPluginArchive(tarball([{ path: 'plugin.wasm', data: wasm }])).catch((e: unknown) => e);
  t.ok(isTyrumError(missing, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((missing as Error).message, /tyrum\.plugin\.json: file not found/);
  const junk = await readPluginArchive(Buffer.from('definitely not an archive '.repeat(40))).catch((e: unknown) => e);
  t.ok(isTyrumError(junk, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((junk as Error).message, /not a tar archive/);
  const badGzip = await readPluginArchive(Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5])).catch((e: unknown) => e);
  t.ok(isTyrumError(badGzip, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((badGzip as Error).message, /not valid gzip/);
});

t.test('a gzip bomb is stopped at the unpacked-size cap without inflating it all', async (t) => {
  // 100 gzip members of 1 MiB of zeros each: ~100 KB that inflate to 100 MiB.
  const member = gzipSync(Buffer.alloc(1024 * 1024));
  const bomb = Buffer.concat(Array.from({ length: 100 }, () => member));
  const start = performance.now();
  const err = await readPluginArchive(bomb).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((err as Error).message, /unpacks to more than \d+ bytes/);
  t.ok(performance.now() - start < 5000);
});

t.test('a doubly compressed archive is refused rather than inflated without a cap', async (t) => {
  const { manifest, wasm } = await goodFiles();
  const twice = gzipSync(tarball([{ path: 'tyrum.plugin.json', data: manifest }, { path: 'plugin.wasm', data: wasm }]));
  const err = await readPluginArchive(twice).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((err as Error).message, /not a tar archive/);
});

t.test('a truncated or corrupted tar is refused', async (t) => {
  const { manifest, wasm } = await goodFiles();
  const tar = tarball([{ path: 'tyrum.plugin.json', data: manifest }, { path: 'plugin.wasm', data: wasm }], false);
  const cut = tar.subarray(0, 512 + 100);
  const err = await readPluginArchive(cut).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'), String(err));
  const corrupt = Buffer.from(tar);
  corrupt[148] = 0x39; // header checksum digit
  corrupt[149] = 0x39;
  const err2 = await readPluginArchive(corrupt).catch((e: unknown) => e);
  t.ok(isTyrumError(err2, 'TYRUM_ERR_PLUGIN_PACKAGE'), String(err2));
});

t.test('an entry whose header lies about its size cannot smuggle data past the caps', async (t) => {
  const err = await readPluginArchive(tarball([{ path: 'plugin.wasm', data: Buffer.from('abc'), size: 1e9 }])).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'), String(err));
});
