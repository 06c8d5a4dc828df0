import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../../../core/store/index.js';
import { destinationAllows, loadSecretKey, parseDestination, SecretStore, type SecretChange } from '../../../core/secrets/index.js';
import { openSecrets } from '../egress/helpers.js';

const canary = () => `CANARY-${randomBytes(12).toString('hex')}`;

t.test('a secret set can be revealed internally, and list shows handles without values', async (t) => {
  let clock = 1_000;
  const env = openSecrets(t);
  const secrets = new SecretStore(env.store, loadSecretKey(env.dir, {}), { now: () => clock });
  const value = canary();
  const h = secrets.set('API_TOKEN', Buffer.from(value), ['API.Example.com', 'api.example.com', 'backup.example.com']);
  t.same(h, { name: 'API_TOKEN', version: 1, destinations: ['api.example.com', 'backup.example.com'], created_at: 1_000, rotated_at: 1_000 }, 'hosts lower-cased and deduplicated');
  t.equal(secrets.reveal('API_TOKEN').toString(), value);
  t.ok(secrets.has('API_TOKEN'));
  t.notOk(secrets.has('OTHER'));
  t.same(secrets.destinations('API_TOKEN'), ['api.example.com', 'backup.example.com']);
  t.same(secrets.destinations('OTHER'), []);
  clock = 2_000;
  secrets.set('B_TOKEN', Buffer.from(canary()), ['b.example.com']);
  const list = secrets.list();
  t.same(
    list.map((x) => Object.keys(x).sort()),
    [
      ['created_at', 'destinations', 'name', 'rotated_at', 'version'],
      ['created_at', 'destinations', 'name', 'rotated_at', 'version'],
    ],
  );
  t.same(
    list.map((x) => x.name),
    ['API_TOKEN', 'B_TOKEN'],
  );
  t.notMatch(JSON.stringify(list), value, 'no value in the listing');
  t.notMatch(JSON.stringify(secrets.get('API_TOKEN')), value);
  t.throws(() => secrets.reveal('MISSING'), { code: 'TYRUM_ERR_NOT_FOUND', message: /secret handle MISSING does not exist/ });
});

t.test('rotation bumps the version, keeps created_at, updates rotated_at and can keep or replace destinations', async (t) => {
  let clock = 10;
  const env = openSecrets(t);
  const secrets = new SecretStore(env.store, loadSecretKey(env.dir, {}), { now: () => clock });
  secrets.set('TOKEN', Buffer.from('first-value'), ['a.example']);
  clock = 20;
  const r2 = secrets.set('TOKEN', Buffer.from('second-value'), undefined);
  t.same(r2, { name: 'TOKEN', version: 2, destinations: ['a.example'], created_at: 10, rotated_at: 20 }, 'undefined keeps the destinations');
  clock = 30;
  const r3 = secrets.set('TOKEN', Buffer.from('third-value'), ['b.example']);
  t.same(r3, { name: 'TOKEN', version: 3, destinations: ['b.example'], created_at: 10, rotated_at: 30 });
  t.equal(secrets.reveal('TOKEN').toString(), 'third-value');
  t.throws(() => secrets.set('NEW_ONE', Buffer.from('some-value'), undefined), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /at least one destination/ });
});

t.test('every write uses a fresh nonce, and a ciphertext cannot be replayed across versions or swapped between handles', async (t) => {
  const env = openSecrets(t);
  const { secrets, store } = env;
  secrets.set('TOKEN', Buffer.from('version-one-value'), ['a.example']);
  const v1 = store.secrets.get('TOKEN')!;
  secrets.set('TOKEN', Buffer.from('version-two-value'), undefined);
  const v2 = store.secrets.get('TOKEN')!;
  t.not(v1.nonce.toString('hex'), v2.nonce.toString('hex'), 'new nonce per write');
  t.equal(v2.version, 2);

  // Write version 1's ciphertext back under version 2 (a rollback by someone with DB access).
  store.secrets.put({ ...v2, nonce: v1.nonce, ciphertext: v1.ciphertext, tag: v1.tag });
  t.throws(() => secrets.reveal('TOKEN'), { code: 'TYRUM_ERR_SECRET_DECRYPT', message: /secret TOKEN \(version 2\) cannot be decrypted/ });
  // The AAD stops relabelling; restoring a whole old row (its version number included) is a
  // rollback only someone with write access to the database can do, and it decrypts as what it was.
  store.secrets.put({ ...v1 });
  t.equal(secrets.reveal('TOKEN').toString(), 'version-one-value', 'an untouched v1 row decrypts only as v1');

  secrets.set('OTHER', Buffer.from('other-secret-value'), ['b.example']);
  const other = store.secrets.get('OTHER')!;
  store.secrets.put({ ...other, name: 'STOLEN', destinations: JSON.stringify(['evil.example']) });
  t.throws(() => secrets.reveal('STOLEN'), { code: 'TYRUM_ERR_SECRET_DECRYPT', message: /secret STOLEN/ }, 'a ciphertext copied to another handle does not decrypt');
  const tampered = { ...other, ciphertext: Buffer.from(other.ciphertext) };
  tampered.ciphertext[0] = (tampered.ciphertext[0] ?? 0) ^ 1;
  store.secrets.put(tampered);
  t.throws(() => secrets.reveal('OTHER'), { code: 'TYRUM_ERR_SECRET_DECRYPT' }, 'a flipped bit fails authentication');
});

t.test('a store opened with the wrong key fails with a coded error naming the handle, not a crash', async (t) => {
  const env = openSecrets(t);
  env.secrets.set('GITHUB_TOKEN', Buffer.from(canary()), ['api.github.com']);
  const wrong = new SecretStore(env.store, randomBytes(32));
  t.throws(() => wrong.reveal('GITHUB_TOKEN'), { code: 'TYRUM_ERR_SECRET_DECRYPT', message: /secret GITHUB_TOKEN \(version 1\).*TYRUM_SECRETS_KEY or secrets\.key/ });
  t.same(
    wrong.list().map((h) => h.name),
    ['GITHUB_TOKEN'],
    'handles are still listed',
  );
  t.same(wrong.values(), [], 'nothing decryptable, nothing returned');
  t.throws(() => new SecretStore(env.store, randomBytes(16)), { code: 'TYRUM_ERR_SECRET_KEY' });
});

t.test('names, values and destinations are validated, and short values are refused because they cannot be redacted', async (t) => {
  const { secrets } = openSecrets(t);
  for (const bad of ['lower', '1ABC', 'A-B', '', 'A'.repeat(65)]) {
    t.throws(() => secrets.set(bad, Buffer.from('long-enough'), ['a.example']), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /secret name must match/ }, bad);
  }
  t.throws(() => secrets.set('SHORT', Buffer.from('12345'), ['a.example']), {
    code: 'TYRUM_ERR_INVALID_ARGUMENT',
    message: /5 bytes; at least 6 are required because shorter values cannot be redacted reliably/,
  });
  t.throws(() => secrets.set('EMPTY', Buffer.alloc(0), ['a.example']), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => secrets.set('HUGE', Buffer.alloc(64 * 1024 + 1, 1), ['a.example']), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /at most 65536/ });
  t.ok(secrets.set('MAX', Buffer.alloc(64 * 1024, 0x41), ['a.example']), 'exactly 64 KiB is fine');
  t.throws(() => secrets.set('NODEST', Buffer.from('long-enough'), []), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /at least one destination/ });
  for (const d of ['a.example:443', '*.example.com', 'a.example/path', '', 'ftp://a.example', 'https://a.example/path', 'https://user@a.example', 'https://a.example:0', 'https://a.example:65536', 'https://*.example.com', 'http://a.example?x=1', 'http://']) {
    t.throws(() => secrets.set('BADDEST', Buffer.from('long-enough'), [d]), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /not an exact host \(https, port 443\) or origin/ }, d);
  }
  t.throws(
    () =>
      secrets.set(
        'MANY',
        Buffer.from('long-enough'),
        Array.from({ length: 17 }, (_, i) => `h${i}.example`),
      ),
    { message: /at most 16/ },
  );
  t.notOk(secrets.has('SHORT'));
  t.ok(secrets.set('IPS', Buffer.from('long-enough'), ['127.0.0.1', '[::1]']), 'IP literals are exact hosts');
});

t.test('the database file and its WAL never contain a plaintext value or its common encodings', async (t) => {
  const env = openSecrets(t);
  const values = [canary(), canary()];
  env.secrets.set('CANARY_ONE', Buffer.from(values[0]!), ['a.example']);
  env.secrets.set('CANARY_ONE', Buffer.from(values[1]!), undefined); // rotation
  env.secrets.set('CANARY_TWO', Buffer.from(values[0]!), ['b.example']);
  const needles = values.flatMap((v) => [v, Buffer.from(v).toString('base64'), Buffer.from(v).toString('hex')]);
  const files = () => ['', '-wal', '-shm'].map((s) => env.dbPath + s).filter(existsSync);
  const scan = (label: string) => {
    const present = files();
    t.ok(present.length >= 1, `${label}: database files exist`);
    for (const f of present) {
      const bytes = readFileSync(f);
      for (const n of needles) t.equal(bytes.indexOf(Buffer.from(n)), -1, `${label}: ${f.slice(env.dir.length)} has no ${n.slice(0, 10)}...`);
    }
  };
  t.ok(existsSync(`${env.dbPath}-wal`), 'the WAL is in use');
  scan('live');
  env.store.close();
  scan('after checkpoint on close');
  t.notOk(readFileSync(join(env.dir, 'secrets.key')).includes(Buffer.from(values[0]!)), 'nor the key file');
});

t.test('onChange reports local writes and revision notices writes by another process', async (t) => {
  const env = openSecrets(t);
  const changes: SecretChange[] = [];
  const off = env.secrets.onChange((c) => changes.push(c));
  const r0 = env.secrets.revision();
  t.equal(env.secrets.revision(), r0, 'stable when nothing changed');
  env.secrets.set('A_TOKEN', Buffer.from('value-aaaaa'), ['a.example']);
  const r1 = env.secrets.revision();
  t.ok(r1 > r0);
  env.secrets.remove('A_TOKEN');
  t.same(changes, [
    { kind: 'set', name: 'A_TOKEN', version: 1 },
    { kind: 'remove', name: 'A_TOKEN', version: 1 },
  ]);
  t.notOk(env.secrets.remove('A_TOKEN'), 'removing twice is false');
  off();
  const r2 = env.secrets.revision();

  // Another process (the CLI) writes through its own connection.
  const other = openStore(env.dbPath);
  const otherSecrets = new SecretStore(other, loadSecretKey(env.dir, {}));
  otherSecrets.set('CLI_TOKEN', Buffer.from('set-by-the-cli'), ['c.example']);
  other.close();
  const r3 = env.secrets.revision();
  t.ok(r3 > r2, 'a write by another connection changes the revision');
  t.equal(env.secrets.reveal('CLI_TOKEN').toString(), 'set-by-the-cli');
  t.equal(changes.length, 2, 'unsubscribed listener not called');
});

t.test('a listener that throws does not undo the committed change', async (t) => {
  const env = openSecrets(t);
  env.secrets.onChange(() => {
    throw new Error('listener broke');
  });
  const seen: string[] = [];
  env.secrets.onChange((c) => seen.push(c.name));
  t.throws(() => env.secrets.set('X_TOKEN', Buffer.from('value-xxxxx'), ['x.example']), { message: 'listener broke' });
  t.ok(env.secrets.has('X_TOKEN'), 'committed');
  t.same(seen, ['X_TOKEN'], 'later listeners still ran');
});

t.test('destinations are origins: a bare host means https on port 443; http and other ports are named explicitly', async (t) => {
  const { secrets } = openSecrets(t);
  const h = secrets.set('ORIGINS', Buffer.from('long-enough'), ['api.example.com', 'HTTP://127.0.0.1:8080/', 'https://api.example.com:443', 'https://[::1]:8443', 'http://Local.Test']);
  t.same(h.destinations, ['api.example.com', 'http://127.0.0.1:8080', 'https://[::1]:8443', 'http://local.test'], 'stored normalised (lower case, default port dropped, no trailing slash); https://api.example.com:443 is the bare host again');
  const o = (scheme: 'http' | 'https', host: string, port: number) => ({ scheme, host, port });
  t.same(parseDestination('api.example.com'), o('https', 'api.example.com', 443), 'a bare host is https:443');
  t.same(parseDestination('http://local.test'), o('http', 'local.test', 80));
  t.ok(destinationAllows('api.example.com', o('https', 'api.example.com', 443)));
  t.notOk(destinationAllows('api.example.com', o('http', 'api.example.com', 80)), 'a bare host never allows plain http');
  t.notOk(destinationAllows('api.example.com', o('https', 'api.example.com', 8443)), 'nor another port');
  t.ok(destinationAllows('http://127.0.0.1:8080', o('http', '127.0.0.1', 8080)));
  t.notOk(destinationAllows('http://127.0.0.1:8080', o('http', '127.0.0.1', 8081)), 'another port on the same host is another origin');
  t.notOk(destinationAllows('http://127.0.0.1:8080', o('https', '127.0.0.1', 8080)));
  t.notOk(destinationAllows('https://api.example.com', o('http', 'api.example.com', 443)), 'https binding, http request');
  t.ok(destinationAllows('https://[::1]:8443', o('https', '[::1]', 8443)));
  t.equal(parseDestination('https://a.example/x'), null);
});

t.test("a tenant's handles are its own: same names, separate values, its tenant bound into the ciphertext, every value redacted", async (t) => {
  const env = openSecrets(t);
  const { secrets, store, redactor } = env;
  store.tx(() => store.tenants.insert({ id: 'acme', label: 'acme', created_at: 1 }));
  const hostValue = canary();
  const acmeValue = canary();
  secrets.set('TOKEN', Buffer.from(hostValue), ['a.example']);
  const before = secrets.revision();
  const h = secrets.set('TOKEN', Buffer.from(acmeValue), ['b.example'], { tenant: 'acme' });
  t.equal(h.version, 1, "the tenant's handle is a new handle, not a rotation of the host's");
  t.ok(secrets.revision() > before, "a tenant's write changes the revision (the redactor rebuilds)");
  t.equal(secrets.reveal('TOKEN').toString(), hostValue);
  t.equal(secrets.reveal('TOKEN', 'acme').toString(), acmeValue);
  t.same(secrets.destinations('TOKEN', 'acme'), ['b.example']);
  t.same(secrets.list().map((x) => x.name), ['TOKEN']);
  t.same(secrets.list('acme').map((x) => x.destinations), [['b.example']]);
  t.notOk(secrets.has('TOKEN', 'beta'));
  t.same(store.secrets.list().length, 1, "the host's table holds the host's handle only");
  t.same(secrets.values().map((v) => [v.tenant ?? 'default', v.name]), [['default', 'TOKEN'], ['acme', 'TOKEN']]);

  // Every tenant's value is redacted, labelled with the handle's name only; a finding names its tenant.
  t.equal(redactor.redactText(`${hostValue} ${acmeValue}`), '[REDACTED:TOKEN] [REDACTED:TOKEN]');
  t.same(redactor.findInText(acmeValue), ['acme/TOKEN']);
  t.same(redactor.findInText(hostValue), ['TOKEN']);

  // The tenant is bound into the AAD: a tenant's ciphertext moved to the host (or back) does not decrypt.
  const acmeRow = store.secrets.get('TOKEN', 'acme')!;
  store.secrets.put({ ...acmeRow, name: 'MOVED' });
  t.throws(() => secrets.reveal('MOVED'), { code: 'TYRUM_ERR_SECRET_DECRYPT' }, "a tenant's ciphertext in the host's namespace");
  const hostRow = store.secrets.get('TOKEN')!;
  store.secrets.put({ ...hostRow, name: 'MOVED' }, 'acme');
  t.throws(() => secrets.reveal('MOVED', 'acme'), { code: 'TYRUM_ERR_SECRET_DECRYPT' }, "the host's ciphertext in a tenant's namespace");

  t.ok(secrets.remove('TOKEN', 'acme'));
  t.equal(secrets.reveal('TOKEN').toString(), hostValue, "removing the tenant's handle leaves the host's");
  t.notOk(secrets.remove('TOKEN', 'acme'));
});
