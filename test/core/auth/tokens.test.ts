import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { openStore } from '../../../core/store/index.js';
import { TokenService, parseToken, parseTtl } from '../../../core/auth/tokens.js';

t.test('tokens', async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 't.db'));
  t.teardown(() => store.close());
  let now = 1_700_000_000_000;
  const tokens = new TokenService(store, () => now);

  t.test('a created token authenticates; its secret is stored only as a salted hash', async (t) => {
    const { token, record } = await tokens.create({ scopes: ['operator.read'], label: 'ci', createdBy: 'test' });
    const parsed = parseToken(token)!;
    t.equal(parsed.id, record.id);
    const who = await tokens.authenticate(token);
    t.same(who?.scopes, ['operator.read']);
    t.same(who?.roles, ['client']);
    t.equal(record.salt.length, 16);
    t.equal(record.hash.length, 32);
    t.match(record.kdf, /^scrypt:N=\d+,r=\d+,p=\d+$/);
    // Nothing in the database file contains the secret.
    store.tx(() => undefined);
    const bytes = readFileSync(join(dir, 't.db')).toString('latin1') + readFileSync(join(dir, 't.db-wal')).toString('latin1');
    t.notOk(bytes.includes(parsed.secret), 'secret absent from the database and WAL');
  });

  t.test('a wrong secret, an unknown id or a malformed token do not authenticate', async (t) => {
    const { token } = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    const { id, secret } = parseToken(token)!;
    const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
    t.equal(await tokens.authenticate(`tyrum_${id}_${flipped}`), null);
    t.equal(await tokens.authenticate(`tyrum_ffffffffffffffff_${secret}`), null);
    t.equal(await tokens.authenticate('Bearer nonsense'), null);
    t.equal(await tokens.authenticate(''), null);
  });

  t.test('revoked and expired tokens do not authenticate', async (t) => {
    const a = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    tokens.revoke(a.record.id);
    t.equal(await tokens.authenticate(a.token), null);
    t.throws(() => tokens.revoke(a.record.id), { code: 'TYRUM_ERR_INVALID_STATE' });
    t.throws(() => tokens.revoke('0123456789abcdef'), { code: 'TYRUM_ERR_NOT_FOUND' });
    const b = await tokens.create({ scopes: ['operator.read'], ttlSeconds: 60, createdBy: 'test' });
    t.ok(await tokens.authenticate(b.token));
    now += 60_001;
    t.equal(await tokens.authenticate(b.token), null);
  });

  t.test('creation rejects unknown scopes and roles, and scope escalation', async (t) => {
    await t.rejects(tokens.create({ scopes: ['operator.root'], createdBy: 'x' }), /unknown scope "operator.root"/);
    await t.rejects(tokens.create({ scopes: [], createdBy: 'x' }), /at least one scope/);
    await t.rejects(tokens.create({ scopes: ['operator.read'], roles: ['god'], createdBy: 'x' }), /unknown role "god"/);
    await t.rejects(tokens.create({ scopes: ['operator.read', 'operator.admin'], maxScopes: ['operator.read'], createdBy: 'x' }), { code: 'TYRUM_ERR_SCOPE_ESCALATION' });
  });
});

t.test('ttl parsing accepts s/m/h/d and refuses nonsense and tiny values', async (t) => {
  t.equal(parseTtl('30d'), 30 * 86400);
  t.equal(parseTtl('12h'), 12 * 3600);
  t.equal(parseTtl('45m'), 45 * 60);
  t.equal(parseTtl('90'), 90);
  t.throws(() => parseTtl('10s'), /shorter than the minimum/);
  t.throws(() => parseTtl('1 week'), /invalid ttl/);
  t.throws(() => parseTtl('-5d'), /invalid ttl/);
});

t.test('a cached verification never outlives revocation or expiry, and never admits a wrong secret', async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'c.db'));
  t.teardown(() => store.close());
  let now = 1_700_000_000_000;
  const tokens = new TokenService(store, () => now);
  const a = await tokens.create({ scopes: ['operator.read'], ttlSeconds: 120, createdBy: 'test' });
  t.ok(await tokens.authenticate(a.token), 'first check runs the KDF');
  t.ok(await tokens.authenticate(a.token), 'second check is served by the cache');
  const { id, secret } = parseToken(a.token)!;
  t.equal(await tokens.authenticate(`tyrum_${id}_${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`), null, 'a different secret for the same id is hashed and refused');
  now += 121_000;
  t.equal(await tokens.authenticate(a.token), null, 'expiry applies despite the cache');
  const b = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  t.ok(await tokens.authenticate(b.token));
  tokens.revoke(b.record.id);
  t.equal(await tokens.authenticate(b.token), null, 'revocation applies despite the cache');
});
