import t from 'tap';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openHome, type HomeServices } from '../../../core/runtime.js';
import { listAudit } from '../../../core/audit/index.js';
import { pluginKeygen, pluginPack, pluginSign } from '../../../sdk/author/cli/test-pack.js';
import { createKeyFile, packToFile, signArchiveFile } from '../../../sdk/author/pack.js';
import { loadPublisherKey, signArchive } from '../../../sdk/author/signing.js';
import { parseSignature, signatureMessage } from '../../../core/registry/signature.js';
import { buildConfig } from '../../../core/config/index.js';
import { pluginDir, BUILT } from '../../core/registry/helpers.js';

const CLI = { kind: 'cli', user: 'test' };
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) }, out, err };
}

type T = { testdir(): string; teardown(fn: () => unknown): void };

/** A gateway home, with trusted publishers in its config.json when given. */
function home(t: T, parent: string, trusted?: Array<{ name: string; public_key: string }>): HomeServices {
  const dir = join(parent, 'home');
  const svc0 = openHome(dir);
  void svc0.close();
  if (trusted) writeFileSync(join(dir, 'config.json'), JSON.stringify({ trusted_publishers: trusted }));
  const svc = openHome(dir);
  t.teardown(() => svc.close());
  return svc;
}

/** A packed echo plugin (publisher "Tyrum tests") in `parent`. */
async function packed(parent: string, id = 'echo', version = '1.0.0'): Promise<string> {
  const dir = await pluginDir(parent, { id, version, wat: 'echo', tools: [{ id: 'echo' }] });
  return (await packToFile(dir, { outDir: parent })).path;
}

async function key(parent: string, name: string): Promise<{ file: string; publicKey: string }> {
  const k = await createKeyFile(join(parent, name));
  return { file: k.path, publicKey: k.publicKey };
}

t.test('keygen writes a 0600 Ed25519 PEM, prints the public key, and never overwrites', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'publisher.pem');
  const c = capture();
  t.equal(await pluginKeygen(['--out', file], c.io), 0);
  t.equal(c.out.length, 1);
  t.match(c.out[0], /^[A-Za-z0-9_-]{59}$/, 'SPKI DER of an Ed25519 key in base64url');
  t.match(c.err.join('\n'), /"trusted_publishers": \[\{ "name": .*"public_key": "/);
  t.equal(statSync(file).mode & 0o777, 0o600);
  const pem = readFileSync(file, 'utf8');
  t.match(pem, /^-----BEGIN PRIVATE KEY-----/);
  t.equal(loadPublisherKey(pem, file).asymmetricKeyType, 'ed25519');
  await t.rejects(pluginKeygen(['--out', file], capture().io), { code: 'TYRUM_ERR_CONFLICT', message: /already exists; refusing to overwrite a key/ });
  t.equal(readFileSync(file, 'utf8'), pem, 'the existing key is untouched');
  const usage = capture();
  t.equal(await pluginKeygen([], usage.io), 2, 'missing --out is a usage error');
  const rsa = join(dir, 'rsa.pem');
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const archive = await packed(dir);
  await t.rejects(pluginSign([archive, '--key', rsa], capture().io), { message: /an rsa key; publisher keys are Ed25519/ });
});

t.test('pack writes a deterministic <id>-<version>.tgz and prints its sha256', async (t) => {
  const parent = t.testdir();
  const dir = await pluginDir(parent, { id: 'echo', wat: 'echo', tools: [{ id: 'echo' }] });
  const out = join(parent, 'a.tgz');
  const c = capture();
  t.equal(await pluginPack([dir, '--out', out], c.io), 0);
  const bytes = readFileSync(out);
  t.match(c.out[0], /^packed echo 1\.0\.0 \(publisher Tyrum tests\): .*a\.tgz \(\d+ bytes\)$/);
  t.equal(c.out[1], `sha256 ${sha256(bytes)}`);
  const r = await packToFile(dir, { outDir: parent });
  t.equal(r.path, join(parent, 'echo-1.0.0.tgz'));
  t.same(readFileSync(r.path), bytes, 'the same files pack to the same bytes');
  const j = capture();
  t.equal(await pluginPack([dir, '--out', join(parent, 'b.tgz'), '--json'], j.io), 0);
  t.match(JSON.parse(j.out[0]!), { id: 'echo', version: '1.0.0', sha256: sha256(bytes), bytes: bytes.byteLength });
  const broken = await pluginDir(parent, { id: 'broken', wat: 'echo', tools: [{ id: 'missing' }] });
  await t.rejects(pluginPack([broken, '--out', join(parent, 'c.tgz')], capture().io), { message: /contributes\.tools\[0\]\.export "missing": the module has no such exported function/ });
  t.notOk(existsSync(join(parent, 'c.tgz')), 'nothing is written for a plugin the gateway would refuse');
});

t.test('sign writes ARCHIVE.sig binding publisher, digest and key', async (t) => {
  const parent = t.testdir();
  const archive = await packed(parent);
  const k = await key(parent, 'k.pem');
  const c = capture();
  t.equal(await pluginSign([archive, '--key', k.file], c.io), 0);
  t.match(c.out[0], /^signed echo 1\.0\.0 as publisher "Tyrum tests": .*echo-1\.0\.0\.tgz\.sig$/);
  const sigText = readFileSync(`${archive}.sig`, 'utf8');
  const sig = parseSignature(sigText, 'sig');
  t.same(Object.keys(JSON.parse(sigText)), ['version', 'publisher', 'sha256', 'public_key', 'signature']);
  t.equal(sig.version, 1);
  t.equal(sig.publisher, 'Tyrum tests');
  t.equal(sig.sha256, sha256(readFileSync(archive)));
  t.equal(sig.public_key, k.publicKey);
  t.match(signatureMessage(sig).toString(), /^tyrum-plugin-signature\/v1\n\{"public_key":".*","publisher":"Tyrum tests","sha256":"[0-9a-f]{64}","version":1\}$/);
  t.equal(await pluginSign([archive], capture().io), 2, 'missing --key is a usage error');
});

t.test('with trusted publishers: only archives signed by the manifest publisher\'s trusted key install', async (t) => {
  const parent = t.testdir();
  const mine = await key(parent, 'mine.pem');
  const other = await key(parent, 'other.pem');
  const stranger = await key(parent, 'stranger.pem');
  const svc = home(t, parent, [
    { name: 'Tyrum tests', public_key: mine.publicKey },
    { name: 'acme', public_key: other.publicKey },
  ]);
  t.equal(svc.config.trustedPublishers.length, 2);

  // Signed by the trusted key of the manifest's publisher: accepted.
  const good = await packed(join(parent, 'good'));
  await signArchiveFile(good, mine.file);
  const r = await svc.plugins.install(good, CLI);
  t.equal(r.action, 'installed');
  await svc.audit.flush();
  const entry = listAudit(svc.store, { limit: 10 }).find((e) => e.type === 'plugin.installed')!;
  t.match(entry.data, { signed_by: { publisher: 'Tyrum tests', public_key: mine.publicKey } });

  // Unsigned: refused, naming the trusted publishers.
  const unsigned = await packed(join(parent, 'unsigned'), 'plain');
  await t.rejects(svc.plugins.install(unsigned, CLI), {
    code: 'TYRUM_ERR_PLUGIN_INTEGRITY',
    message: /^plugin plain is not signed; this gateway accepts only plugins signed by: Tyrum tests, acme/,
    details: { signature: 'unsigned' },
  });
  // A directory carries no signature.
  const dir = await pluginDir(parent, { id: 'fromdir', wat: 'echo', tools: [{ id: 'echo' }] });
  await t.rejects(svc.plugins.install(dir, CLI), { message: /^plugin fromdir is not signed; this gateway accepts only plugins signed by: Tyrum tests, acme \(a directory carries no signature/ });

  // Signed by a key nobody trusts.
  const wrong = await packed(join(parent, 'wrong'), 'wrongkey');
  await signArchiveFile(wrong, stranger.file);
  await t.rejects(svc.plugins.install(wrong, CLI), {
    message: new RegExp(`^plugin wrongkey is signed by a key this gateway does not trust \\(${stranger.publicKey}\\); this gateway accepts only plugins signed by: Tyrum tests, acme$`),
    details: { signature: 'untrusted_key' },
  });

  // Signed by a trusted key, but that of another publisher than the manifest names.
  const mismatch = await packed(join(parent, 'mismatch'), 'borrowed');
  await signArchiveFile(mismatch, other.file);
  await t.rejects(svc.plugins.install(mismatch, CLI), {
    message: /^plugin borrowed names publisher "Tyrum tests" but is signed with the key of trusted publisher "acme"/,
    details: { signature: 'wrong_publisher_key' },
  });

  // A signature claiming another publisher than the manifest's.
  const claimed = await packed(join(parent, 'claimed'), 'claimed');
  const sig = signArchive(readFileSync(claimed), 'acme', loadPublisherKey(readFileSync(other.file), 'k'));
  writeFileSync(`${claimed}.sig`, JSON.stringify(sig));
  await t.rejects(svc.plugins.install(claimed, CLI), {
    message: /the signature is for publisher "acme" but plugin claimed's manifest names publisher "Tyrum tests"/,
    details: { signature: 'publisher_mismatch' },
  });

  // One byte changed after signing.
  const tampered = await packed(join(parent, 'tampered'), 'tampered');
  await signArchiveFile(tampered, mine.file);
  const bytes = readFileSync(tampered);
  bytes[bytes.length - 10]! ^= 0x01;
  writeFileSync(tampered, bytes);
  await t.rejects(svc.plugins.install(tampered, CLI), {
    message: /tampered-1\.0\.0\.tgz\.sig does not match tampered-1\.0\.0\.tgz: the signature covers sha256 [0-9a-f]{64}, the archive is [0-9a-f]{64} \(the archive changed after signing, or the signature belongs to another archive\)/,
    details: { signature: 'digest_mismatch' },
  });

  // A valid signature of another archive, put beside this one.
  const a = await packed(join(parent, 'a'), 'alpha');
  const b = await packed(join(parent, 'b'), 'beta');
  await signArchiveFile(b, mine.file);
  copyFileSync(`${b}.sig`, `${a}.sig`);
  await t.rejects(svc.plugins.install(a, CLI), { code: 'TYRUM_ERR_PLUGIN_INTEGRITY', message: /alpha-1\.0\.0\.tgz\.sig does not match alpha-1\.0\.0\.tgz/, details: { signature: 'digest_mismatch' } });

  // The digest edited to match, the signature left as it was: Ed25519 fails.
  const forged = await packed(join(parent, 'forged'), 'forged');
  const fsig = JSON.parse(readFileSync(`${b}.sig`, 'utf8')) as Record<string, unknown>;
  fsig.sha256 = sha256(readFileSync(forged));
  writeFileSync(`${forged}.sig`, JSON.stringify(fsig));
  await t.rejects(svc.plugins.install(forged, CLI), { message: /the signature does not verify under the public key it names/, details: { signature: 'bad_signature' } });

  // Garbage signature file.
  const junk = await packed(join(parent, 'junk'), 'junk');
  writeFileSync(`${junk}.sig`, '{"version":1}');
  await t.rejects(svc.plugins.install(junk, CLI), { message: /not a valid plugin signature: "publisher" must be a string/, details: { signature: 'malformed' } });

  t.same(svc.plugins.list().map((p) => p.id), ['echo'], 'only the properly signed plugin was installed');
});

t.test('the unsigned refusal, worded as for text-utils', async (t) => {
  const parent = t.testdir();
  const acme = await key(parent, 'acme.pem');
  const svc = home(t, parent, [{ name: 'acme', public_key: acme.publicKey }]);
  const copy = join(parent, 'tu');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(copy);
  copyFileSync(join(BUILT.textUtils, 'plugin.wasm'), join(copy, 'plugin.wasm'));
  copyFileSync(join(BUILT.textUtils, 'tyrum.plugin.json'), join(copy, 'tyrum.plugin.json'));
  const archive = (await packToFile(copy, { outDir: parent })).path;
  await t.rejects(svc.plugins.install(archive, CLI), { message: /^plugin text-utils is not signed; this gateway accepts only plugins signed by: acme \(expected a signature at / });
  // Signed by acme's key but the manifest says publisher "Tyrum": refused too.
  await signArchiveFile(archive, acme.file);
  await t.rejects(svc.plugins.install(archive, CLI), { message: /^plugin text-utils names publisher "Tyrum" but is signed with the key of trusted publisher "acme"/ });
});

t.test('without trusted publishers: unsigned installs as before; a present signature must still be valid', async (t) => {
  const parent = t.testdir();
  const svc = home(t, parent);
  t.same(svc.config.trustedPublishers, []);
  const unsigned = await packed(join(parent, 'u'), 'unsigned');
  t.equal((await svc.plugins.install(unsigned, CLI)).action, 'installed');
  const dir = await pluginDir(parent, { id: 'fromdir', wat: 'echo', tools: [{ id: 'echo' }] });
  t.equal((await svc.plugins.install(dir, CLI)).action, 'installed');
  const k = await key(parent, 'k.pem');
  const signed = await packed(join(parent, 's'), 'signed');
  await signArchiveFile(signed, k.file);
  t.equal((await svc.plugins.install(signed, CLI)).action, 'installed', 'any valid signature is accepted when nobody is trusted');
  const tampered = await packed(join(parent, 't'), 'tampered');
  await signArchiveFile(tampered, k.file);
  const bytes = readFileSync(tampered);
  bytes[20]! ^= 0xff;
  writeFileSync(tampered, bytes);
  await t.rejects(svc.plugins.install(tampered, CLI), { code: 'TYRUM_ERR_PLUGIN_INTEGRITY', details: { signature: 'digest_mismatch' } });
});

t.test('trusted_publishers in config.json is validated', async (t) => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const pk = publicKey.export({ type: 'spki', format: 'der' }).toString('base64url');
  const cfg = buildConfig('/tmp/h', { trusted_publishers: [{ name: 'acme', public_key: pk }] });
  t.same(cfg.trustedPublishers, [{ name: 'acme', publicKey: pk }]);
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'der' }).toString('base64url');
  t.throws(() => buildConfig('/tmp/h', { trusted_publishers: [{ name: 'acme', public_key: x25519 }] }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /\/trusted_publishers\/0\/public_key: not an Ed25519 public key/ });
  t.throws(() => buildConfig('/tmp/h', { trusted_publishers: [{ name: 'acme' }] }), { code: 'TYRUM_ERR_INVALID_CONFIG' });
  t.throws(() => buildConfig('/tmp/h', { trusted_publishers: [{ name: 'acme', public_key: pk, extra: 1 }] }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /unknown key "extra"/ });
});
