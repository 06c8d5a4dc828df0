// Version changes (D8): upgrades show what they newly ask for, downgrades need an explicit flag,
// and a published version never changes content.
import t from 'tap';
import { isTyrumError } from '../../core/errors/index.js';
import { compareVersions } from '../../manifests/index.js';
import type { PluginManifest } from '../../schemas/index.js';
import { goodManifest } from './helpers.js';

const base = () => goodManifest('a'.repeat(64)) as unknown as PluginManifest;
const withVersion = (version: string, edit: (m: PluginManifest) => void = () => undefined): PluginManifest => {
  const m = structuredClone(base());
  m.version = version;
  edit(m);
  return m;
};

t.test('a higher version is an upgrade carrying the permission diff', async (t) => {
  const prev = withVersion('1.0.0');
  const next = withVersion('1.1.0', (m) => {
    m.requests = { egress: [{ host: 'api.example.com', methods: ['GET', 'POST'] }] };
    m.risk = ['network'];
  });
  const r = compareVersions(prev, next);
  t.equal(r.kind, 'upgrade');
  t.equal(r.from, '1.0.0');
  t.equal(r.to, '1.1.0');
  t.same(r.diff.map((d) => `${d.kind} ${d.change} ${d.detail}`), ['egress added https://api.example.com:443 GET,POST', 'risk added network']);
});

t.test('an upgrade asking for nothing new has an empty diff', async (t) => {
  t.same(compareVersions(withVersion('1.0.0'), withVersion('2.0.0')).diff, []);
});

t.test('D8: a lower version is refused as a downgrade unless explicitly allowed', async (t) => {
  const err = (() => {
    try {
      compareVersions(withVersion('1.2.0'), withVersion('1.1.9'));
    } catch (e) {
      return e;
    }
  })();
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_DOWNGRADE'));
  t.match((err as Error).message, /echo-tools: 1\.1\.9 is older than the installed 1\.2\.0; a downgrade must be explicit/);
  const r = compareVersions(withVersion('1.2.0'), withVersion('1.1.9', (m) => (m.risk = ['destructive'])), { allowDowngrade: true });
  t.equal(r.kind, 'downgrade');
  t.same(r.diff.map((d) => d.detail), ['destructive'], 'a downgrade still shows what it newly asks for');
});

t.test('prerelease ordering follows semver', async (t) => {
  t.equal(compareVersions(withVersion('1.0.0-rc.1'), withVersion('1.0.0')).kind, 'upgrade');
  t.throws(() => compareVersions(withVersion('1.0.0'), withVersion('1.0.0-rc.1')), { code: 'TYRUM_ERR_PLUGIN_DOWNGRADE' });
});

t.test('the same version with the same content is "same"; with different content it is refused', async (t) => {
  t.equal(compareVersions(withVersion('1.0.0'), withVersion('1.0.0')).kind, 'same');
  const other = withVersion('1.0.0', (m) => (m.wasm.sha256 = 'b'.repeat(64)));
  t.throws(() => compareVersions(withVersion('1.0.0'), other), {
    code: 'TYRUM_ERR_PLUGIN_VERSION_CONFLICT',
    message: /echo-tools@1\.0\.0 is already installed with different content \(wasm sha256 a{64} installed, b{64} offered\)/,
  });
  t.throws(() => compareVersions(withVersion('1.0.0'), withVersion('1.0.0', (m) => (m.description = 'changed'))), { code: 'TYRUM_ERR_PLUGIN_VERSION_CONFLICT' });
});

t.test('comparing different plugins or non-semver versions is refused', async (t) => {
  t.throws(() => compareVersions(withVersion('1.0.0'), withVersion('1.0.1', (m) => (m.id = 'other'))), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => compareVersions(withVersion('1.0'), withVersion('1.0.1')), { code: 'TYRUM_ERR_MANIFEST_INVALID', message: /version: "1\.0" is not a valid semantic version/ });
  t.throws(() => compareVersions(withVersion('1.0.0+a'), withVersion('1.0.0+b')), { code: 'TYRUM_ERR_MANIFEST_INVALID', message: /version: "1\.0\.0\+a" has build metadata/ });
});
