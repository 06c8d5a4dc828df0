import t from 'tap';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from '../../../core/audit/log.js';
import { openStore } from '../../../core/store/index.js';
import { loadSecretKey, Redactor, SecretStore, encodedForms } from '../../../core/secrets/index.js';
import { openSecrets } from '../egress/helpers.js';

const VALUE = 'CANARY-a/b+c "q"\\ é ü 9f'; // slash, plus, quote, backslash, space, non-ASCII
const L = '[REDACTED:CANARY_TOKEN]';

function fixed(): Redactor {
  return new Redactor([{ name: 'CANARY_TOKEN', value: Buffer.from(VALUE) }]);
}

t.test('a value is redacted as itself and in its common encodings', async (t) => {
  const r = fixed();
  const b = Buffer.from(VALUE);
  const forms: Record<string, string> = {
    raw: VALUE,
    base64: b.toString('base64'),
    base64Unpadded: b.toString('base64').replace(/=+$/, ''),
    base64url: b.toString('base64url'),
    hexLower: b.toString('hex'),
    hexUpper: b.toString('hex').toUpperCase(),
    uri: encodeURIComponent(VALUE),
    uriLower: encodeURIComponent(VALUE).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    form: new URLSearchParams({ x: VALUE }).toString().slice(2),
    json: JSON.stringify(VALUE).slice(1, -1),
    jsonAscii: JSON.stringify(VALUE).slice(1, -1).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
    everyBytePercent: [...b].map((x) => `%${x.toString(16).padStart(2, '0').toUpperCase()}`).join(''),
  };
  for (const [label, form] of Object.entries(forms)) {
    const out = r.redactText(`before ${form} after`);
    t.equal(out, `before ${L} after`, label);
  }
  t.equal(r.redactText(`${VALUE}${VALUE}`), `${L}${L}`, 'every occurrence');
  t.equal(r.redactText('nothing to see'), 'nothing to see');
});

t.test('base64 of a longer string containing the value is caught at any alignment (e.g. Basic auth)', async (t) => {
  const r = fixed();
  for (const prefix of ['', 'u:', 'us:', 'use:', 'user:']) {
    const b64 = Buffer.from(`${prefix}${VALUE}!trailer`).toString('base64');
    const out = r.redactText(`Authorization: Basic ${b64}`);
    t.match(out, L, `prefix ${JSON.stringify(prefix)}`);
    // What is left of the base64 cannot decode back to the value.
    t.notMatch(Buffer.from(out.replace(L, ''), 'base64').toString('latin1'), VALUE);
  }
});

t.test('redactDeep walks JSON-like values, including object keys, without touching the input', async (t) => {
  const r = fixed();
  const input = {
    plain: 'ok',
    [`key-${VALUE}`]: 1,
    nested: { list: ['a', `x${VALUE}y`, { deep: Buffer.from(VALUE).toString('hex') }], n: 42, flag: true, nil: null },
    bytes: new Uint8Array(Buffer.from(`<${VALUE}>`)),
    err: Object.assign(new Error(`failed with ${VALUE}`), { code: 'E_X' }),
    when: new Date(0),
  };
  const before = JSON.stringify(input);
  const out = r.redactDeep(input) as Record<string, unknown>;
  t.equal(JSON.stringify(input), before, 'input untouched');
  t.notMatch(JSON.stringify(out), VALUE);
  t.same(out['nested'], { list: ['a', `x${L}y`, { deep: L }], n: 42, flag: true, nil: null });
  t.ok(Object.keys(out).includes(`key-${L}`), 'keys are redacted');
  t.equal(Buffer.from(out['bytes'] as Uint8Array).toString(), `<${L}>`);
  t.same(out['err'], { name: 'Error', message: `failed with ${L}`, code: 'E_X' });
  t.ok(out['when'] instanceof Date);

  const cyclic: Record<string, unknown> = { v: VALUE };
  cyclic['self'] = cyclic;
  t.same(r.redactDeep(cyclic), { v: L, self: '[Circular]' });
  const shared = { v: VALUE };
  t.same(r.redactDeep({ a: shared, b: shared }), { a: { v: L }, b: { v: L } }, 'a shared sub-object is not mistaken for a cycle');

  const digits = new Redactor([{ name: 'PIN_CODE', value: Buffer.from('73914082') }]);
  t.same(digits.redactDeep({ pin: 73914082, other: 7 }), { pin: '[REDACTED:PIN_CODE]', other: 7 }, 'a numeric value is caught as a number too');
  t.equal(new Redactor([]).redactDeep(input), input, 'an empty redactor returns the value as is');
});

t.test('redactBytes finds binary values and their encodings in bodies, and returns the input when clean', async (t) => {
  const bin = randomBytes(20);
  bin[3] = 0xff; // not valid UTF-8
  const r = new Redactor([{ name: 'BIN_KEY', value: bin }]);
  const body = Buffer.concat([Buffer.from('head:'), bin, Buffer.from(':mid:'), Buffer.from(bin.toString('base64')), Buffer.from(':tail')]);
  t.equal(Buffer.from(r.redactBytes(body)).toString('latin1'), 'head:[REDACTED:BIN_KEY]:mid:[REDACTED:BIN_KEY]:tail');
  const clean = Buffer.from('no secrets in here');
  t.equal(r.redactBytes(clean), clean, 'same object back when nothing matched');
  t.same(r.findInBytes(body), ['BIN_KEY']);
  t.same(r.findInText(`x ${bin.toString('hex')} y`), ['BIN_KEY']);
  t.same(r.findInText('clean'), []);
  t.ok(encodedForms(bin).length >= 8, 'several encodings are precomputed');
});

t.test('a value shorter than 6 bytes is refused because it cannot be redacted reliably', async (t) => {
  t.throws(() => new Redactor([{ name: 'TINY', value: Buffer.from('abc') }]), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /cannot be redacted reliably/ });
});

t.test('a live redactor follows rotations and other processes, and keeps redacting retired values', async (t) => {
  const env = openSecrets(t);
  const r = env.redactor;
  t.equal(r.redactText('x'), 'x');
  env.secrets.set('TOKEN', Buffer.from('first-secret-value'), ['a.example']);
  t.equal(r.redactText('first-secret-value'), '[REDACTED:TOKEN]', 'a new secret is picked up at once');
  env.secrets.set('TOKEN', Buffer.from('second-secret-value'), undefined);
  t.equal(r.redactText('first-secret-value second-secret-value'), '[REDACTED:TOKEN] [REDACTED:TOKEN]', 'old and new value');
  env.secrets.remove('TOKEN');
  t.equal(r.redactText('second-secret-value'), '[REDACTED:TOKEN]', 'a removed value stays redacted in this process');

  const other = openStore(env.dbPath);
  new SecretStore(other, loadSecretKey(env.dir, {})).set('FROM_CLI', Buffer.from('value-from-the-cli'), ['c.example']);
  other.close();
  t.equal(r.redactText('value-from-the-cli'), '[REDACTED:FROM_CLI]', 'a secret set by another process is redacted');
  t.equal(r.size, 3);
});

t.test('redactDeep works as the audit log redact option: the canary never reaches the audit table', async (t) => {
  const env = openSecrets(t);
  const value = `CANARY-${randomBytes(12).toString('hex')}`;
  env.secrets.set('CANARY_TOKEN', Buffer.from(value), ['api.example.com']);
  const { privateKey } = generateKeyPairSync('ed25519');
  const log = new AuditLog({
    store: env.store,
    signer: { keyId: 'test', sign: (d) => sign(null, d, privateKey) },
    verifier: { verify: (d, sig) => verify(null, d, privateKey, sig) },
    checkpointPath: join(env.dir, 'audit.checkpoint.json'),
    redact: env.redactor.redactDeep,
  });
  const entry = log.appendSync('tool.invoked', { kind: 'plugin', id: 'leaky' }, { output: `the token is ${value}`, b64: Buffer.from(value).toString('base64'), [value]: 'as a key' });
  t.notMatch(JSON.stringify(entry), value);
  t.match(entry.data, { output: 'the token is [REDACTED:CANARY_TOKEN]', b64: '[REDACTED:CANARY_TOKEN]' });
  env.store.close();
  for (const f of [env.dbPath, `${env.dbPath}-wal`].filter(existsSync)) {
    const bytes = readFileSync(f);
    t.equal(bytes.indexOf(Buffer.from(value)), -1, `${f.slice(env.dir.length)} has no canary`);
    t.equal(bytes.indexOf(Buffer.from(Buffer.from(value).toString('base64'))), -1);
  }
});

t.test('redaction stays fast with many secrets: patterns are compiled once, not per call', async (t) => {
  const entries = Array.from({ length: 32 }, (_, i) => ({ name: `S_${i}`, value: Buffer.from(randomBytes(24).toString('base64url')) }));
  const r = new Redactor(entries);
  const text = randomBytes(600_000).toString('base64'); // 800 KB of base64-looking noise
  const t0 = performance.now();
  for (let i = 0; i < 2_000; i++) r.redactText(`log line ${i} with some ordinary words in it`);
  r.redactText(text);
  r.redactBytes(Buffer.from(text));
  const ms = performance.now() - t0;
  t.ok(ms < 10_000, `2,000 lines and 1.6 MB through 32 secrets in ${ms.toFixed(0)} ms (a guard against pathological regexes, not a benchmark)`);
  const hidden = `${text.slice(0, 1000)}${entries[17]!.value.toString()}${text.slice(1000, 2000)}`;
  t.same(r.findInText(hidden), ['S_17']);
});
