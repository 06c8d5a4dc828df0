import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { openStore } from '../../../core/store/index.js';
import { MIGRATIONS } from '../../../core/store/migrations.js';
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
    const reader = await tokens.create({ scopes: ['operator.read'], createdBy: 'x' });
    await t.rejects(tokens.create({ scopes: ['operator.read', 'operator.admin'], parentId: reader.record.id, createdBy: reader.record.id }), { code: 'TYRUM_ERR_SCOPE_ESCALATION' });
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

t.test('a minted token can neither outrank nor outlive its minter, nor survive it', async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'l.db'));
  t.teardown(() => store.close());
  const now = 1_700_000_000_000;
  const tokens = new TokenService(store, () => now);
  const root = await tokens.create({ scopes: ['operator.read', 'operator.admin'], createdBy: 'test' });

  t.test('roles: a client token cannot mint a node token', async (t) => {
    await t.rejects(tokens.create({ scopes: ['operator.read'], roles: ['node'], createdBy: root.record.id, parentId: root.record.id }), { code: 'TYRUM_ERR_ROLE_ESCALATION' });
    await t.rejects(tokens.create({ scopes: ['operator.read'], roles: ['client', 'node'], createdBy: root.record.id, parentId: root.record.id }), { code: 'TYRUM_ERR_ROLE_ESCALATION' });
    const child = await tokens.create({ scopes: ['operator.read'], roles: ['client'], createdBy: root.record.id, parentId: root.record.id });
    t.equal(child.record.parent_id, root.record.id, 'the parent is recorded on the child');
  });

  t.test('scopes: no scope the minter lacks', async (t) => {
    const reader = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    await t.rejects(tokens.create({ scopes: ['operator.admin'], createdBy: reader.record.id, parentId: reader.record.id }), { code: 'TYRUM_ERR_SCOPE_ESCALATION' });
  });

  t.test('lifetime: a minter with an expiry cannot mint a token without one, or with a later one', async (t) => {
    const short = await tokens.create({ scopes: ['operator.read', 'operator.admin'], ttlSeconds: 60, createdBy: 'test' });
    await t.rejects(tokens.create({ scopes: ['operator.read'], createdBy: short.record.id, parentId: short.record.id }), { code: 'TYRUM_ERR_TOKEN_LIFETIME' });
    await t.rejects(tokens.create({ scopes: ['operator.read'], ttlSeconds: 61, createdBy: short.record.id, parentId: short.record.id }), { code: 'TYRUM_ERR_TOKEN_LIFETIME' });
    const ok = await tokens.create({ scopes: ['operator.read'], ttlSeconds: 60, createdBy: short.record.id, parentId: short.record.id });
    t.equal(ok.record.expires_at, short.record.expires_at, 'the same expiry is allowed');
  });

  t.test('a dead minter mints nothing', async (t) => {
    const gone = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    tokens.revoke(gone.record.id);
    await t.rejects(tokens.create({ scopes: ['operator.read'], createdBy: gone.record.id, parentId: gone.record.id }), { code: 'TYRUM_ERR_UNAUTHORIZED' });
  });

  t.test('revoking a token revokes its descendants', async (t) => {
    const parent = await tokens.create({ scopes: ['operator.read', 'operator.admin'], createdBy: 'test' });
    const child = await tokens.create({ scopes: ['operator.read', 'operator.admin'], createdBy: parent.record.id, parentId: parent.record.id });
    const grandchild = await tokens.create({ scopes: ['operator.read'], createdBy: child.record.id, parentId: child.record.id });
    const sibling = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    t.ok(await tokens.authenticate(grandchild.token));
    const r = tokens.revoke(parent.record.id);
    t.same(r.descendants.sort(), [child.record.id, grandchild.record.id].sort(), 'descendants are named');
    t.equal(await tokens.authenticate(child.token), null, 'the child is dead');
    t.equal(await tokens.authenticate(grandchild.token), null, 'the grandchild is dead');
    t.ok(store.tokens.get(grandchild.record.id)!.revoked_at !== null, 'and recorded as revoked');
    t.ok(await tokens.authenticate(sibling.token), 'an unrelated token lives');
  });

  t.test('the expiry of a minter ends its descendants, even ones recorded with a longer life', async (t) => {
    const parent = await tokens.create({ scopes: ['operator.read', 'operator.admin'], createdBy: 'test' });
    const child = await tokens.create({ scopes: ['operator.read'], createdBy: parent.record.id, parentId: parent.record.id });
    t.ok(await tokens.authenticate(child.token));
    // Another connection moves the parent's expiry into the past, as time passing would.
    const db = new Database(join(dir, 'l.db'));
    db.prepare('UPDATE tokens SET expires_at = ? WHERE id = ?').run(now - 1, parent.record.id);
    db.close();
    t.equal(await tokens.authenticate(child.token), null, 'the child of an expired parent does not authenticate');
    t.same(store.tokens.invalidAmong([child.record.id], now), [child.record.id], 'and its sockets are due for closing');
  });
});

t.test('migration 6 links tokens minted before it to their minter, so revoking the minter reaches them', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'old.db');
  const raw = new Database(path);
  for (const m of MIGRATIONS.filter((x) => x.version <= 5)) raw.exec(m.sql);
  raw.pragma('user_version = 5');
  const row = (id: string, createdBy: string) => ({ id, label: '', scopes: '["operator.read","operator.admin"]', roles: '["client"]', kdf: 'scrypt:N=4096,r=8,p=1', salt: Buffer.alloc(16), hash: Buffer.alloc(32), created_at: 1, created_by: createdBy });
  const insert = raw.prepare('INSERT INTO tokens (id, label, scopes, roles, kdf, salt, hash, created_at, created_by) VALUES (@id, @label, @scopes, @roles, @kdf, @salt, @hash, @created_at, @created_by)');
  insert.run(row('aaaaaaaaaaaaaaaa', 'cli'));
  insert.run(row('bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa'));
  insert.run(row('cccccccccccccccc', 'bootstrap'));
  raw.close();
  const store = openStore(path);
  t.teardown(() => store.close());
  t.equal(store.tokens.get('aaaaaaaaaaaaaaaa')!.parent_id, null);
  t.equal(store.tokens.get('bbbbbbbbbbbbbbbb')!.parent_id, 'aaaaaaaaaaaaaaaa', 'the minter recorded in created_by becomes the parent');
  t.equal(store.tokens.get('cccccccccccccccc')!.parent_id, null);
  const r = new TokenService(store).revoke('aaaaaaaaaaaaaaaa');
  t.same(r.descendants, ['bbbbbbbbbbbbbbbb']);
});

t.test('invalidAmong answers for many tokens at once: dead themselves, through an ancestor, or unknown', async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'w.db'));
  t.teardown(() => store.close());
  const now = 1_700_000_000_000;
  const tokens = new TokenService(store, () => now);
  const admin = ['operator.read', 'operator.admin'];
  const live = await tokens.create({ scopes: admin, createdBy: 'test' });
  const liveChild = await tokens.create({ scopes: ['operator.read'], createdBy: live.record.id, parentId: live.record.id });
  const doomed = await tokens.create({ scopes: admin, createdBy: 'test' });
  const orphan = await tokens.create({ scopes: admin, createdBy: doomed.record.id, parentId: doomed.record.id });
  const grandOrphan = await tokens.create({ scopes: ['operator.read'], createdBy: orphan.record.id, parentId: orphan.record.id });
  const revoked = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  tokens.revoke(revoked.record.id);
  // The minter expires behind the gateway's back; its descendants were recorded without an expiry.
  const db = new Database(join(dir, 'w.db'));
  db.prepare('UPDATE tokens SET expires_at = ? WHERE id = ?').run(now, doomed.record.id);
  db.close();
  const ids = [live.record.id, liveChild.record.id, doomed.record.id, orphan.record.id, grandOrphan.record.id, revoked.record.id, 'ffffffffffffffff'];
  t.same(store.tokens.invalidAmong(ids, now), [doomed.record.id, orphan.record.id, grandOrphan.record.id, revoked.record.id, 'ffffffffffffffff'], 'in the order asked');
  t.same(store.tokens.invalidAmong([], now), []);
  t.equal(store.tokens.lineageLive(liveChild.record.id, now), true);
  t.equal(store.tokens.lineageLive(grandOrphan.record.id, now), false);
});

t.test('authenticate writes nothing: last use is noted in memory and written by flushLastUsed, one transaction for all', async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'u.db'));
  t.teardown(() => store.close());
  let now = 1_700_000_000_000;
  const tokens = new TokenService(store, () => now);
  const a = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  const b = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  const version = store.tokens.get(a.record.id);
  t.ok(await tokens.authenticate(a.token));
  t.ok(await tokens.authenticate(b.token));
  t.same(store.tokens.get(a.record.id), version, 'the record is untouched by authentication (no write, no fsync, on the upgrade path)');
  t.equal(store.tokens.get(b.record.id)?.last_used_at, null);
  tokens.flushLastUsed();
  t.equal(store.tokens.get(a.record.id)?.last_used_at, now, 'written by the flush');
  t.equal(store.tokens.get(b.record.id)?.last_used_at, now);
  now += 30_000;
  t.ok(await tokens.authenticate(a.token));
  tokens.flushLastUsed();
  t.equal(store.tokens.get(a.record.id)?.last_used_at, now - 30_000, 'coarse: within a minute of the last recorded use nothing is noted');
  now += 31_000;
  t.ok(await tokens.authenticate(a.token));
  tokens.flushLastUsed();
  t.equal(store.tokens.get(a.record.id)?.last_used_at, now, 'after a minute the next use is noted');
  tokens.flushLastUsed();
  t.equal(store.tokens.get(a.record.id)?.last_used_at, now, 'an empty flush changes nothing');
});

t.test('the verified-token cache is keyed by a keyed hash: neither the secret nor an unkeyed digest of it is held', async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'k.db'));
  t.teardown(() => store.close());
  const tokens = new TokenService(store);
  const a = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  t.ok(await tokens.authenticate(a.token));
  const { secret } = parseToken(a.token)!;
  const held = JSON.stringify([...(tokens as unknown as { verified: Map<string, unknown> }).verified]);
  t.equal((tokens as unknown as { verified: Map<string, unknown> }).verified.size, 1, 'the verification is cached');
  t.notOk(held.includes(secret), 'no secret in the cache');
  for (const alg of ['sha256', 'sha512', 'sha1']) {
    for (const input of [a.token, secret]) {
      for (const enc of ['hex', 'base64', 'base64url'] as const) t.notOk(held.includes(createHash(alg).update(input).digest(enc)), `no unkeyed ${alg} (${enc})`);
    }
  }
  const other = new TokenService(store);
  t.ok(await other.authenticate(a.token));
  t.notSame([...(other as unknown as { verified: Map<string, unknown> }).verified.keys()], [...(tokens as unknown as { verified: Map<string, unknown> }).verified.keys()], 'the key is per process (per service), so cache keys differ');
});

t.test('node credentials: role node only, no scopes; node tokens bound to a device, enrollment tokens expiring', async (t) => {
  const store = openStore(join(t.testdir(), 'k.db'));
  t.teardown(() => store.close());
  const tokens = new TokenService(store);
  const node = await tokens.create({ kind: 'node', roles: ['node'], scopes: [], deviceId: 'dev_x', createdBy: 'pairing:pair_1' });
  t.match(await tokens.authenticate(node.token), { kind: 'node', device_id: 'dev_x', scopes: [], roles: ['node'] });
  const enroll = await tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 3600, createdBy: 'cli' });
  t.match(await tokens.authenticate(enroll.token), { kind: 'node_enrollment', device_id: null });
  const access = await tokens.create({ scopes: ['operator.read'], createdBy: 'cli' });
  t.match(await tokens.authenticate(access.token), { kind: 'access', device_id: null });
  for (const [input, msg] of [
    [{ kind: 'node', roles: ['node'], scopes: ['operator.read'], deviceId: 'd' }, /role node and no scopes/],
    [{ kind: 'node', roles: ['client'], scopes: [], deviceId: 'd' }, /role node and no scopes/],
    [{ kind: 'node', roles: ['node', 'client'], scopes: [], deviceId: 'd' }, /role node and no scopes/],
    [{ kind: 'node', roles: ['node'], scopes: [] }, /bound to a device id/],
    [{ kind: 'node_enrollment', roles: ['node'], scopes: [] }, /needs an expiry/],
    [{ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 60, deviceId: 'd' }, /not bound to a device/],
    [{ scopes: [], roles: ['node'] }, /at least one scope/],
    [{ scopes: ['operator.read'], deviceId: 'd' }, /only node tokens are bound/],
  ] as const) {
    await t.rejects(tokens.create({ createdBy: 'test', ...input } as Parameters<typeof tokens.create>[0]), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: msg }, JSON.stringify(input));
  }
});
