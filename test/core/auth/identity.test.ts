import t from 'tap';
import { generateKeyPairSync, createHash, sign } from 'node:crypto';
import { deriveDeviceId, parseDevicePubkey, proofTranscript, verifyProof } from '../../../core/auth/identity.js';
import { base32LowerNoPad } from '../../../core/util/encoding.js';
import { authorize } from '../../../core/auth/authorize.js';
import { OPERATIONS } from '../../../schemas/index.js';

t.test('base32 follows RFC 4648 test vectors (lowercase, no padding)', async (t) => {
  const vectors: Array<[string, string]> = [['', ''], ['f', 'my'], ['fo', 'mzxq'], ['foo', 'mzxw6'], ['foob', 'mzxw6yq'], ['fooba', 'mzxw6ytb'], ['foobar', 'mzxw6ytboi']];
  for (const [input, out] of vectors) t.equal(base32LowerNoPad(Buffer.from(input)), out, JSON.stringify(input));
});

t.test('device_id is dev_ + base32(sha256(DER SPKI))', async (t) => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  const id = deriveDeviceId(der);
  t.match(id, /^dev_[a-z2-7]{52}$/);
  t.equal(id, 'dev_' + base32LowerNoPad(createHash('sha256').update(der).digest()));
});

t.test('only canonical Ed25519 SPKI keys are accepted as device keys', async (t) => {
  const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
  t.ok(parseDevicePubkey(ed.toString('base64url')));
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' });
  t.equal(parseDevicePubkey(ec.toString('base64url')), null, 'P-256 refused');
  t.equal(parseDevicePubkey(ed.toString('base64') + '=='), null, 'padded/base64 refused');
  t.equal(parseDevicePubkey(Buffer.concat([ed, Buffer.from([0])]).toString('base64url')), null, 'trailing bytes refused');
  t.equal(parseDevicePubkey(''), null);
});

t.test('a proof verifies only for the exact transcript', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const f = { protocol_rev: 1, role: 'client', device_id: 'dev_x', connection_id: '11111111-1111-4111-8111-111111111111', challenge: 'abc' };
  t.equal(proofTranscript(f).toString(), 'tyrum-connect-proof\nprotocol_rev=1\nrole=client\ndevice_id=dev_x\nconnection_id=11111111-1111-4111-8111-111111111111\nchallenge=abc\n');
  const proof = sign(null, proofTranscript(f), privateKey).toString('base64url');
  t.ok(verifyProof(publicKey, f, proof));
  t.notOk(verifyProof(publicKey, { ...f, role: 'node' }, proof), 'role is bound');
  t.notOk(verifyProof(publicKey, { ...f, challenge: 'abd' }, proof), 'challenge is bound');
  t.notOk(verifyProof(publicKey, f, proof.slice(0, -2)), 'truncated signature');
});

t.test('authorize allows any listed scope with a listed role, nothing else', async (t) => {
  t.same(authorize(OPERATIONS.ping, { scopes: [], role: 'node' }), { allowed: true });
  t.same(authorize(OPERATIONS['audit.list'], { scopes: ['operator.read'], role: 'client' }), { allowed: true });
  t.same(authorize(OPERATIONS['audit.list'], { scopes: ['operator.read'], role: 'node' }), { allowed: false, reason: 'role', required: ['operator.read'] });
  t.same(authorize(OPERATIONS['token.create'], { scopes: ['operator.read', 'operator.write'], role: 'client' }), { allowed: false, reason: 'scope', required: ['operator.admin'] });
});

t.test('a device key parsed once is reused for the same text; refusals are never cached', async (t) => {
  const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
  const text = ed.toString('base64url');
  const first = parseDevicePubkey(text);
  const second = parseDevicePubkey(text);
  t.ok(first && second);
  t.equal(second!.key, first!.key, 'the same KeyObject: no second parse and re-export on a reconnect');
  t.equal(deriveDeviceId(second!.der), deriveDeviceId(ed));
  const padded = Buffer.concat([ed, Buffer.from([0])]).toString('base64url');
  t.equal(parseDevicePubkey(padded), null);
  t.equal(parseDevicePubkey(padded), null, 'still refused the second time');
  const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
  t.notOk(parseDevicePubkey(other.toString('base64url'))!.key.equals(first!.key), 'another key is another KeyObject');
});
