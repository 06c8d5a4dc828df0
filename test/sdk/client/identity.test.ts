import { createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { base32LowerNoPad } from '../../../sdk/client/encoding.js';
import { TyrumDeviceKeyError } from '../../../sdk/client/errors.js';
import { deviceIdentity, loadOrCreateDeviceKey, proofTranscript, signProof } from '../../../sdk/client/identity.js';
import { base32ViaBits, expectedTranscript } from './fixtures/fake-gateway.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tyrum-sdk-id-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('device_id is dev_ plus lowercase unpadded base32 of sha256 over the DER SPKI key, as computed independently', async (t) => {
  for (let i = 0; i < 20; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const der = publicKey.export({ type: 'spki', format: 'der' });
    const expected = 'dev_' + base32ViaBits(createHash('sha256').update(der).digest());
    const id = deviceIdentity(privateKey);
    t.equal(id.device_id, expected);
    t.match(id.device_id, /^dev_[a-z2-7]{52}$/, '32 bytes give 52 base32 characters, no padding');
    t.equal(deviceIdentity(publicKey).device_id, expected, 'the public half gives the same identity');
  }
});

t.test('pubkey is the DER SPKI public key in base64url without padding', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const { pubkey } = deviceIdentity(privateKey);
  t.notMatch(pubkey, /[=+/]/);
  t.same(Buffer.from(pubkey, 'base64url'), publicKey.export({ type: 'spki', format: 'der' }));
});

t.test('base32 matches the RFC 4648 test vectors in lowercase without padding', async (t) => {
  const vectors: Array<[string, string]> = [
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ];
  for (const [input, output] of vectors) t.equal(base32LowerNoPad(Buffer.from(input)), output, JSON.stringify(input));
});

t.test('a missing key file is created with mode 0600 in a new 0700 directory and reloads as the same key', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'nested', 'device.key');
  const key = await loadOrCreateDeviceKey(path);
  t.equal(key.asymmetricKeyType, 'ed25519');
  t.equal((await stat(path)).mode & 0o777, 0o600);
  t.equal((await stat(join(dir, 'nested'))).mode & 0o777, 0o700);
  t.match(await readFile(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS8 PEM');
  const again = await loadOrCreateDeviceKey(path);
  t.equal(deviceIdentity(again).device_id, deviceIdentity(key).device_id);
});

t.test('an existing key file readable by group or others is refused with a clear error', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'device.key');
  await loadOrCreateDeviceKey(path);
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    await chmod(path, mode);
    const err = await loadOrCreateDeviceKey(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof TyrumDeviceKeyError, `mode ${mode.toString(8)} refused`);
    t.match((err as Error).message, /must not be readable or writable by group or others/);
    t.equal((err as TyrumDeviceKeyError).code, 'TYRUM_ERR_DEVICE_KEY');
  }
  await chmod(path, 0o600);
  t.equal((await loadOrCreateDeviceKey(path)).asymmetricKeyType, 'ed25519', 'accepted again once fixed');
});

t.test('a key file that is not an Ed25519 PEM private key is refused', async (t) => {
  const dir = await tempDir(t);
  const rsa = join(dir, 'rsa.key');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  await writeFile(rsa, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await t.rejects(loadOrCreateDeviceKey(rsa), /Ed25519 is required/);
  const junk = join(dir, 'junk.key');
  await writeFile(junk, 'not a key', { mode: 0o600 });
  await t.rejects(loadOrCreateDeviceKey(junk), /not a valid PEM private key/);
});

t.test('a key path that is a symlink is refused', async (t) => {
  const dir = await tempDir(t);
  const real = join(dir, 'real.key');
  await loadOrCreateDeviceKey(real);
  const link = join(dir, 'link.key');
  await symlink(real, link);
  await t.rejects(loadOrCreateDeviceKey(link), /symlink/);
});

t.test('the proof transcript has the six documented lines, each ending in a newline', async (t) => {
  const fields = {
    protocol_rev: 1,
    role: 'node' as const,
    device_id: 'dev_abc234',
    connection_id: '3f1c2a4e-5b6d-4c7e-8f90-a1b2c3d4e5f6',
    challenge: 'q83vEjRWeJA-_q83vEjRWeJA-_q83vEjRWeJA-_q83vE',
  };
  const text = proofTranscript(fields);
  t.equal(text, expectedTranscript(fields));
  t.equal(
    text,
    'tyrum-connect-proof\nprotocol_rev=1\nrole=node\ndevice_id=dev_abc234\n' +
      'connection_id=3f1c2a4e-5b6d-4c7e-8f90-a1b2c3d4e5f6\nchallenge=q83vEjRWeJA-_q83vEjRWeJA-_q83vEjRWeJA-_q83vE\n',
  );
});

t.test('the proof transcript refuses fields that could smuggle extra lines', async (t) => {
  const ok = { protocol_rev: 1, role: 'client' as const, device_id: 'dev_abc', connection_id: '3f1c2a4e-5b6d-4c7e-8f90-a1b2c3d4e5f6', challenge: 'AAAA' };
  t.throws(() => proofTranscript({ ...ok, challenge: 'AAAA\nrole=node' }));
  t.throws(() => proofTranscript({ ...ok, connection_id: 'x\nprotocol_rev=2' }));
  t.throws(() => proofTranscript({ ...ok, device_id: 'dev_abc\n' }));
  t.throws(() => proofTranscript({ ...ok, protocol_rev: 1.5 }));
  t.throws(() => proofTranscript({ ...ok, role: 'admin' as 'client' }));
});

t.test('signProof gives a base64url Ed25519 signature that node:crypto verifies with the public key', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const transcript = 'tyrum-connect-proof\nprotocol_rev=1\n';
  const proof = signProof(privateKey, transcript);
  t.match(proof, /^[A-Za-z0-9_-]{86}$/, '64 bytes, unpadded base64url');
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  t.ok(verify(null, Buffer.from(transcript), pub, Buffer.from(proof, 'base64url')));
  t.notOk(verify(null, Buffer.from(transcript + 'x'), pub, Buffer.from(proof, 'base64url')));
});
