// Installed files: layout and permissions, idempotence, immutable versions, and TESTPLAN D8 —
// tampered files are refused at load naming the expected and actual digests.
import t from 'tap';
import { existsSync, readdirSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isTyrumError } from '../../core/errors/index.js';
import { installPluginFiles, loadInstalledPlugin, readPluginSource, removePluginFiles } from '../../manifests/index.js';
import { writePlugin } from './helpers.js';

const mode = (p: string) => statSync(p).mode & 0o777;

t.test('installing copies manifest and module into plugins/<id>/<version> with private permissions', async (t) => {
  const root = t.testdir({ home: {} });
  const src = await readPluginSource(await writePlugin(join(root, 'src'), { edit: (m) => ((m.wasm as { path: string }).path = 'build/plugin.wasm') }));
  const home = join(root, 'home');
  const r = await installPluginFiles(home, src);
  t.equal(r.dir, join(home, 'plugins', 'echo-tools', '1.0.0'));
  t.equal(r.created, true);
  t.equal(r.manifestSha256, src.manifestSha256);
  t.equal(r.wasmSha256, src.wasmSha256);
  t.equal(r.wasmPath, join(r.dir, 'build', 'plugin.wasm'));
  t.equal(mode(join(home, 'plugins')), 0o700);
  t.equal(mode(join(home, 'plugins', 'echo-tools')), 0o700);
  t.equal(mode(r.dir), 0o700);
  t.equal(mode(join(r.dir, 'build')), 0o700);
  t.equal(mode(r.manifestPath), 0o600);
  t.equal(mode(r.wasmPath), 0o600);
  t.same(readdirSync(join(home, 'plugins', 'echo-tools')), ['1.0.0'], 'no temporary directory left behind');
  // The installed copy is itself a valid plugin directory with the same digests.
  const again = await readPluginSource(r.dir);
  t.equal(again.manifestSha256, src.manifestSha256);
});

t.test('installing the identical version again is a no-op', async (t) => {
  const root = t.testdir();
  const src = await readPluginSource(await writePlugin(join(root, 'src')));
  const home = join(root, 'home');
  await installPluginFiles(home, src);
  const second = await installPluginFiles(home, src);
  t.equal(second.created, false);
});

t.test('D8: the same id and version with different content is refused', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const a = await readPluginSource(await writePlugin(join(root, 'a')));
  const b = await readPluginSource(await writePlugin(join(root, 'b'), { edit: (m) => (m.description = 'Something else entirely.') }));
  await installPluginFiles(home, a);
  const err = await installPluginFiles(home, b).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_VERSION_CONFLICT'));
  t.match((err as Error).message, /^echo-tools@1\.0\.0 is already installed with different content \(manifest sha256 [0-9a-f]{64} installed, [0-9a-f]{64} offered\); publish it under a new version/);
  t.equal(err instanceof Error && isTyrumError(err) ? err.wire : '', 'conflict');
});

t.test('a source whose bytes do not match its digests is refused at install', async (t) => {
  const root = t.testdir();
  const src = await readPluginSource(await writePlugin(join(root, 'src')));
  const forged = { ...src, wasmBytes: Buffer.concat([src.wasmBytes, Buffer.from([0])]) };
  const err = await installPluginFiles(join(root, 'home'), forged).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_INTEGRITY'));
  t.notOk(existsSync(join(root, 'home', 'plugins', 'echo-tools', '1.0.0')));
});

t.test('loading an installed plugin re-verifies both digests and returns its bytes', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const src = await readPluginSource(await writePlugin(join(root, 'src')));
  const r = await installPluginFiles(home, src);
  const loaded = await loadInstalledPlugin(home, 'echo-tools', '1.0.0', { manifestSha256: r.manifestSha256, wasmSha256: r.wasmSha256 });
  t.equal(Buffer.compare(loaded.wasmBytes, src.wasmBytes), 0);
  t.same(loaded.manifest, src.manifest);
});

t.test('D8: a tampered installed module is refused at load, naming expected and actual digests', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const src = await readPluginSource(await writePlugin(join(root, 'src')));
  const r = await installPluginFiles(home, src);
  writeFileSync(r.wasmPath, Buffer.concat([src.wasmBytes, Buffer.from([0x00])]));
  const err = await loadInstalledPlugin(home, 'echo-tools', '1.0.0', { manifestSha256: r.manifestSha256, wasmSha256: r.wasmSha256 }).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_INTEGRITY'));
  t.match((err as Error).message, new RegExp(`^echo-tools@1\\.0\\.0: wasm plugin\\.wasm was modified: expected sha256 ${r.wasmSha256}, file is [0-9a-f]{64}$`));
});

t.test('D8: a tampered installed manifest is refused at load before it is parsed', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const src = await readPluginSource(await writePlugin(join(root, 'src')));
  const r = await installPluginFiles(home, src);
  // A consistent-looking edit: more rights, still valid JSON.
  const m = JSON.parse(src.manifestBytes.toString('utf8')) as Record<string, unknown>;
  m.requests = { egress: [{ host: 'exfil.example' }] };
  m.risk = ['network'];
  writeFileSync(r.manifestPath, JSON.stringify(m));
  const err = await loadInstalledPlugin(home, 'echo-tools', '1.0.0', { manifestSha256: r.manifestSha256, wasmSha256: r.wasmSha256 }).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_INTEGRITY'));
  t.match((err as Error).message, new RegExp(`tyrum\\.plugin\\.json was modified: expected sha256 ${r.manifestSha256}, file is [0-9a-f]{64}`));
});

t.test('D8: an installed module replaced by a symbolic link is refused at load', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const src = await readPluginSource(await writePlugin(join(root, 'src')));
  const r = await installPluginFiles(home, src);
  const elsewhere = join(root, 'elsewhere.wasm');
  writeFileSync(elsewhere, src.wasmBytes);
  unlinkSync(r.wasmPath);
  symlinkSync(elsewhere, r.wasmPath);
  const err = await loadInstalledPlugin(home, 'echo-tools', '1.0.0', { manifestSha256: r.manifestSha256, wasmSha256: r.wasmSha256 }).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((err as Error).message, /symbolic link/);
});

t.test('D8: an installed plugin whose host-API range no longer fits the gateway is refused at load', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const src = await readPluginSource(await writePlugin(join(root, 'src'), { edit: (m) => ((m.engines as { tyrum: string }).tyrum = '^1.0.0') }));
  const r = await installPluginFiles(home, src);
  const err = await loadInstalledPlugin(home, 'echo-tools', '1.0.0', { manifestSha256: r.manifestSha256, wasmSha256: r.wasmSha256 }, { hostApiVersion: '2.0.0' }).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_INCOMPATIBLE'));
  t.match((err as Error).message, /plugin requires host API \^1\.0\.0; this gateway provides 2\.0\.0/);
});

t.test('loading a version that is not installed is a not-found error; bad ids and versions are refused', async (t) => {
  const home = t.testdir();
  const digests = { manifestSha256: 'a'.repeat(64), wasmSha256: 'b'.repeat(64) };
  const err = await loadInstalledPlugin(home, 'echo-tools', '9.9.9', digests).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_NOT_FOUND'));
  for (const [id, version] of [['../etc', '1.0.0'], ['echo-tools', '../../x'], ['echo-tools', 'v1.0.0']] as const) {
    const e = await loadInstalledPlugin(home, id, version, digests).catch((x: unknown) => x);
    t.ok(isTyrumError(e, 'TYRUM_ERR_INVALID_ARGUMENT'), `${id}@${version}`);
  }
  const e = await loadInstalledPlugin(home, 'echo-tools', '1.0.0', { manifestSha256: 'nope', wasmSha256: 'b'.repeat(64) }).catch((x: unknown) => x);
  t.ok(isTyrumError(e, 'TYRUM_ERR_INVALID_ARGUMENT'));
});

t.test('removing files takes one version or every version, and reports whether anything was there', async (t) => {
  const root = t.testdir();
  const home = join(root, 'home');
  const v1 = await readPluginSource(await writePlugin(join(root, 'v1')));
  const v2 = await readPluginSource(await writePlugin(join(root, 'v2'), { edit: (m) => (m.version = '1.1.0') }));
  await installPluginFiles(home, v1);
  await installPluginFiles(home, v2);
  t.equal(await removePluginFiles(home, 'echo-tools', '1.0.0'), true);
  t.same(readdirSync(join(home, 'plugins', 'echo-tools')), ['1.1.0']);
  t.equal(await removePluginFiles(home, 'echo-tools'), true);
  t.notOk(existsSync(join(home, 'plugins', 'echo-tools')));
  t.same(readdirSync(join(home, 'plugins')), [], 'nothing left in plugins/, not even the trash');
  t.equal(await removePluginFiles(home, 'echo-tools'), false);
  const err = await removePluginFiles(home, '..').catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_INVALID_ARGUMENT'));
});
