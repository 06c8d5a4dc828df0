import t from 'tap';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSecretKey, secretKeyPath } from '../../../core/secrets/index.js';

t.test('the key file is created on first use with mode 0600 and the same key is read back later', async (t) => {
  const home = t.testdir();
  const path = secretKeyPath(home);
  t.equal(path, join(home, 'secrets.key'));
  t.notOk(existsSync(path));
  const a = loadSecretKey(home, {});
  t.equal(a.length, 32);
  if (process.platform !== 'win32') t.equal(statSync(path).mode & 0o777, 0o600);
  t.equal(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64').toString('hex'), a.toString('hex'), 'stored as base64');
  t.same(loadSecretKey(home, {}), a, 'the second load reads the same key');
});

t.test('an existing key file is never overwritten', async (t) => {
  const home = t.testdir();
  const key = randomBytes(32);
  writeFileSync(secretKeyPath(home), `${key.toString('base64url')}\n`, { mode: 0o600 });
  t.same(loadSecretKey(home, {}), key, 'base64url is accepted in the file too');
  t.equal(readFileSync(secretKeyPath(home), 'utf8'), `${key.toString('base64url')}\n`);
});

t.test('TYRUM_SECRETS_KEY in base64 or base64url takes precedence and no key file is written', async (t) => {
  const home = t.testdir();
  const key = randomBytes(32);
  t.same(loadSecretKey(home, { TYRUM_SECRETS_KEY: key.toString('base64') }), key);
  t.same(loadSecretKey(home, { TYRUM_SECRETS_KEY: key.toString('base64url') }), key);
  t.same(loadSecretKey(home, { TYRUM_SECRETS_KEY: ` ${key.toString('base64')}\n` }), key, 'surrounding whitespace is ignored');
  t.notOk(existsSync(secretKeyPath(home)));
});

t.test('a key of the wrong length or not in base64 is refused with a clear error that does not echo it', async (t) => {
  const home = t.testdir();
  const short = randomBytes(16).toString('base64');
  t.throws(() => loadSecretKey(home, { TYRUM_SECRETS_KEY: short }), { code: 'TYRUM_ERR_SECRET_KEY', message: /decodes to 16 bytes; it must be exactly 32/ });
  t.throws(() => loadSecretKey(home, { TYRUM_SECRETS_KEY: randomBytes(33).toString('base64') }), { code: 'TYRUM_ERR_SECRET_KEY', message: /33 bytes/ });
  const bad = 'not a key!!';
  try {
    loadSecretKey(home, { TYRUM_SECRETS_KEY: bad });
    t.fail('accepted');
  } catch (e) {
    t.match(e, { code: 'TYRUM_ERR_SECRET_KEY', message: /TYRUM_SECRETS_KEY is not base64/ });
    t.notMatch((e as Error).message, bad);
  }
  try {
    loadSecretKey(home, { TYRUM_SECRETS_KEY: short });
  } catch (e) {
    t.notMatch((e as Error).message, short, 'the key text is never echoed');
  }
  t.notOk(existsSync(secretKeyPath(home)), 'a bad environment key does not fall back to a file');
});

t.test('a key file that group or others can read is refused with a chmod hint', { skip: process.platform === 'win32' && 'POSIX modes' }, async (t) => {
  const home = t.testdir();
  loadSecretKey(home, {});
  chmodSync(secretKeyPath(home), 0o640);
  t.throws(() => loadSecretKey(home, {}), { code: 'TYRUM_ERR_SECRET_KEY', message: new RegExp(`chmod 600 .*secrets\\.key`) });
  chmodSync(secretKeyPath(home), 0o604);
  t.throws(() => loadSecretKey(home, {}), { code: 'TYRUM_ERR_SECRET_KEY', message: /accessible by group or others/ });
  chmodSync(secretKeyPath(home), 0o600);
  t.equal(loadSecretKey(home, {}).length, 32);
});

t.test('a corrupt key file and an unusable home are coded errors', async (t) => {
  const home = t.testdir();
  writeFileSync(secretKeyPath(home), 'c2hvcnQ=\n', { mode: 0o600 });
  t.throws(() => loadSecretKey(home, {}), { code: 'TYRUM_ERR_SECRET_KEY', message: /decodes to 5 bytes/ });
  t.throws(() => loadSecretKey(join(home, 'missing', 'dir'), {}), { code: 'TYRUM_ERR_SECRET_KEY', message: /cannot create the secrets key file/ });
});
