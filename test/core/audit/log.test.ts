import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTyrumError } from '../../../core/errors/index.js';
import { canonicalJson } from '../../../core/util/canonical-json.js';
import { AuditLog, GENESIS_HASH, hashEntry, verifyAudit, type AuditEntry } from '../../../core/audit/index.js';
import { signCheckpoint, writeCheckpoint } from '../../../core/audit/checkpoint.js';
import { fill, makeKeys, setup } from './fixtures/index.js';
import { openStore } from '../../../core/store/index.js';

const fixed = () => new Date('2025-01-02T03:04:05.000Z');

t.test('append commits an entry chained from the genesis hash', async (t) => {
  const env = setup(t, { now: fixed });
  const first = await env.log.append('auth.failed', { kind: 'anonymous', ip: '127.0.0.1' }, { reason: 'bad token' });
  const second = await env.log.append('token.created', { kind: 'cli' }, { id: 'tok_1' });

  t.match(first, { seq: 1, ts: '2025-01-02T03:04:05.000Z', type: 'auth.failed', actor: { kind: 'anonymous', ip: '127.0.0.1' }, data: { reason: 'bad token' }, prev_hash: GENESIS_HASH });
  t.equal(first.hash, hashEntry(first));
  t.equal(second.seq, 2);
  t.equal(second.prev_hash, first.hash);
  const row = env.store.audit.get(1);
  t.equal(row?.actor, canonicalJson({ kind: 'anonymous', ip: '127.0.0.1' }), 'actor is stored as the canonical JSON that was hashed');
  t.equal(row?.hash, first.hash);
  t.ok(env.verify().ok);
});

t.test('appends issued in the same tick all commit in one transaction', async (t) => {
  const env = setup(t);
  const insertsPerTx: number[] = [];
  const tx = env.store.tx.bind(env.store);
  const insert = env.store.audit.insert.bind(env.store.audit);
  env.store.audit.insert = (row) => {
    insertsPerTx[insertsPerTx.length - 1]! += 1;
    insert(row);
  };
  env.store.tx = <T>(fn: () => T): T => {
    insertsPerTx.push(0);
    return tx(fn);
  };

  const pending: Promise<AuditEntry>[] = [];
  for (let i = 0; i < 500; i++) pending.push(env.log.append('test.event', { kind: 'cli' }, { i }));
  const entries = await Promise.all(pending);

  t.same(insertsPerTx.filter((n) => n > 0), [500], 'one transaction carried all 500 inserts');
  t.same(entries.map((e) => e.seq), Array.from({ length: 500 }, (_, i) => i + 1), 'seq follows call order');
  t.same(entries.map((e) => e.data.i), Array.from({ length: 500 }, (_, i) => i));
  const result = env.verify();
  t.equal(result.ok, true);
  t.equal(result.entries, 500);
  t.equal(result.checkpoint?.seq, 500);
});

t.test('appendSync commits at once, after entries already queued by append', async (t) => {
  const env = setup(t);
  const queued = env.log.append('test.async', { kind: 'cli' }, {});
  const entry = env.log.appendSync('token.revoked', { kind: 'cli' }, { id: 'tok_1' });

  t.equal(entry.seq, 2);
  t.equal(env.store.audit.count(), 2, 'committed before appendSync returned');
  t.equal((await queued).seq, 1);
  t.equal(entry.prev_hash, (await queued).hash);
  t.equal(env.verify().checkpoint?.seq, 2, 'the checkpoint is written before appendSync returns');
});

t.test('flush commits queued entries without waiting for the next tick', async (t) => {
  const env = setup(t);
  const pending = env.log.append('test.event', { kind: 'cli' }, {});
  await env.log.flush();
  t.equal(env.store.audit.count(), 1);
  t.equal((await pending).seq, 1);
});

t.test('close commits queued entries and then refuses new ones', async (t) => {
  const env = setup(t);
  const pending = env.log.append('test.event', { kind: 'cli' }, {});
  env.log.close();
  t.equal(env.store.audit.count(), 1);
  t.equal((await pending).seq, 1);
  await t.rejects(env.log.append('test.event', { kind: 'cli' }, {}), { code: 'TYRUM_ERR_INVALID_STATE' });
  t.throws(() => env.log.appendSync('test.event', { kind: 'cli' }, {}), { code: 'TYRUM_ERR_INVALID_STATE' });
});

t.test('invalid input rejects only its own append', async (t) => {
  const env = setup(t);
  const good = env.log.append('test.event', { kind: 'cli' }, { ok: true });
  await t.rejects(env.log.append('Not A Type', { kind: 'cli' }, {}), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  await t.rejects(env.log.append('test.event', { kind: 'cli' }, { n: 1n }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' }, 'BigInt is not JSON');
  await t.rejects(env.log.append('test.event', { kind: '' }, {}), { code: 'TYRUM_ERR_INVALID_ARGUMENT' }, 'actor needs a kind');
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  await t.rejects(env.log.append('test.event', { kind: 'cli' }, circular), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.equal((await good).seq, 1);
  t.equal(env.store.audit.count(), 1);
});

t.test('data is logged as JSON: dates become strings and later mutation has no effect', async (t) => {
  const env = setup(t);
  const data: Record<string, unknown> = { at: new Date('2024-05-06T07:08:09.000Z'), skip: undefined };
  const pending = env.log.append('test.event', { kind: 'cli' }, data);
  data.at = 'mutated';
  const entry = await pending;
  t.same(entry.data, { at: '2024-05-06T07:08:09.000Z' });
  t.same(env.log.list()[0]?.data, { at: '2024-05-06T07:08:09.000Z' });
  t.ok(env.verify().ok);
});

t.test('the redact hook runs on actor and data before hashing', async (t) => {
  const redact = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === 'secret' ? '[redacted]' : x)));
  const env = setup(t, { redact });
  const entry = await env.log.append('token.created', { kind: 'token', id: 't1', secret: 'a' }, { secret: 'hunter2', label: 'ci' });

  t.same(entry.data, { secret: '[redacted]', label: 'ci' });
  t.same(entry.actor, { kind: 'token', id: 't1', secret: '[redacted]' });
  t.notMatch(readFileSync(env.dbPath, 'latin1') + readWal(env.dbPath), /hunter2/, 'the secret never reaches the database file');
  t.ok(env.verify().ok, 'the hash covers the redacted values');
});

t.test('a failed transaction rejects every entry in the batch', async (t) => {
  const env = setup(t);
  const a = env.log.append('test.event', { kind: 'cli' }, {});
  const b = env.log.append('test.event', { kind: 'cli' }, {});
  env.store.close();
  await t.rejects(a, /not open/);
  await t.rejects(b, /not open/);
});

t.test('the checkpoint is a signed file with the committed head', async (t) => {
  const env = setup(t, { now: fixed });
  await fill(env.log, 3);
  const last = env.store.audit.head();
  const cp = JSON.parse(readFileSync(env.checkpointPath, 'utf8')) as Record<string, unknown>;

  t.same(cp, { version: 1, seq: 3, head_hash: last?.hash, count: 3, ts: '2025-01-02T03:04:05.000Z', key_id: 'gateway-key', signature: cp.signature });
  const { signature, ...body } = cp;
  t.ok(env.keys.verifier.verify(Buffer.from(canonicalJson(body)), Buffer.from(String(signature), 'base64url')), 'signature covers every other field');
  t.same(readdirSync(env.dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file is left behind');
});

t.test('the checkpoint never regresses to a lower seq', async (t) => {
  const env = setup(t);
  const newer = signCheckpoint({ seq: 1000, head_hash: 'a'.repeat(64), count: 1000, ts: fixed().toISOString() }, env.keys.signer);
  writeFileSync(env.checkpointPath, JSON.stringify(newer));
  // A writer that read no checkpoint (or an older one) does not publish over one written since.
  const older = signCheckpoint({ seq: 2, head_hash: 'b'.repeat(64), count: 2, ts: fixed().toISOString() }, env.keys.signer);
  t.equal(writeCheckpoint(env.checkpointPath, older, null, (fn) => env.store.tx(fn)), false);
  t.equal((JSON.parse(readFileSync(env.checkpointPath, 'utf8')) as { seq: number }).seq, 1000);
  t.same(readdirSync(env.dir).filter((f) => f.endsWith('.tmp')), [], 'the unused temp file is removed');
  // A log the checkpoint is ahead of was truncated: nothing is appended to it or signed over it.
  await t.rejects(fill(env.log, 2), { code: 'TYRUM_ERR_AUDIT_TAMPERED', details: { committed: false } });
  t.equal(env.store.audit.count(), 0);
  t.equal((JSON.parse(readFileSync(env.checkpointPath, 'utf8')) as { seq: number }).seq, 1000);
});

t.test('an empty log is anchored before its first entry, so another process never sees entries without a checkpoint', async (t) => {
  const env = setup(t);
  t.match(env.log.checkAnchor(), { ok: true, checkpoint: { seq: 0, head_hash: GENESIS_HASH } });
  t.ok(existsSync(env.checkpointPath), 'the seq 0 checkpoint is on disk before anything is committed');
  // Entries committed by the first process whose own checkpoint is not written yet.
  const entry = { seq: 1, ts: fixed().toISOString(), type: 'test.event', actor: { kind: 'cli' }, data: {}, prev_hash: GENESIS_HASH };
  env.store.audit.insert({ ...entry, actor: canonicalJson(entry.actor), data: canonicalJson(entry.data), hash: hashEntry(entry) });
  const other = new AuditLog({ store: env.openStore(), signer: env.keys.signer, verifier: env.keys.verifier, checkpointPath: env.checkpointPath });
  t.match(other.checkAnchor(), { ok: true }, 'a second process is not misled into reporting tampering');
  t.equal((await other.append('test.event', { kind: 'cli' }, {})).seq, 2);
  t.ok(env.verify().ok);
});

t.test('a checkpoint deleted or put back while the log runs is never signed over', async (t) => {
  const env = setup(t);
  await fill(env.log, 3);
  const third = readFileSync(env.checkpointPath, 'utf8');
  await fill(env.log, 2);
  rmSync(env.checkpointPath);
  await t.rejects(fill(env.log, 1), { code: 'TYRUM_ERR_AUDIT_TAMPERED', message: /was deleted/, details: { committed: true } });
  t.notOk(existsSync(env.checkpointPath), 'no fresh checkpoint replaces the deleted one');

  writeFileSync(env.checkpointPath, third);
  await t.rejects(fill(env.log, 1), { code: 'TYRUM_ERR_AUDIT_TAMPERED', message: /went back from entry 5 to entry 3/ });
  t.equal(readFileSync(env.checkpointPath, 'utf8'), third);
});

t.test('a log found tampered only when its checkpoint is signed says its entries went in, but no checkpoint over them', async (t) => {
  const env = setup(t);
  await fill(env.log, 2);
  rmSync(env.checkpointPath);
  const err = await fill(env.log, 1).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { code: 'TYRUM_ERR_AUDIT_TAMPERED', details: { committed: true }, message: /No checkpoint will be signed over it/ });
  t.notMatch((err as Error).message, /Nothing will be appended/, 'it does not claim the committed entries were refused');
  t.equal(env.store.audit.count(), 3);
});

t.test('the checkpoint is signed off the call path: on an interval, every N entries, on flush and on close', async (t) => {
  const cpSeq = (path: string) => (JSON.parse(readFileSync(path, 'utf8')) as { seq: number }).seq;
  const dir = t.testdir();
  const keys = makeKeys();
  const open = (name: string, options: { checkpointIntervalMs?: number; checkpointEntries?: number }) => {
    const store = openStore(join(dir, `${name}.db`));
    t.teardown(() => store.close());
    const checkpointPath = join(dir, `${name}.checkpoint.json`);
    return { store, checkpointPath, log: new AuditLog({ store, signer: keys.signer, verifier: keys.verifier, checkpointPath, ...options }) };
  };
  const batches = async (log: AuditLog, n: number) => {
    for (let i = 0; i < n; i++) await log.append('test.event', { kind: 'cli' }, { i });
  };

  const slow = open('slow', { checkpointIntervalMs: 600_000, checkpointEntries: 1000 });
  await batches(slow.log, 1);
  t.equal(cpSeq(slow.checkpointPath), 1, "a log's first entry is checkpointed at once");
  await batches(slow.log, 20);
  t.equal(cpSeq(slow.checkpointPath), 1, 'twenty more batches sign no checkpoint');
  await slow.log.flush();
  t.equal(cpSeq(slow.checkpointPath), 21, 'flush signs it');
  await batches(slow.log, 3);
  slow.log.close();
  t.equal(cpSeq(slow.checkpointPath), 24, 'close signs it');
  t.ok(verifyAudit({ store: slow.store, verifier: keys.verifier, checkpointPath: slow.checkpointPath }).ok);

  const counted = open('counted', { checkpointIntervalMs: 600_000, checkpointEntries: 5 });
  await batches(counted.log, 1);
  await batches(counted.log, 4);
  t.equal(cpSeq(counted.checkpointPath), 1);
  await batches(counted.log, 1);
  t.equal(cpSeq(counted.checkpointPath), 6, 'the fifth entry without a checkpoint signs one');

  const timed = open('timed', { checkpointIntervalMs: 50, checkpointEntries: 1000 });
  await batches(timed.log, 1);
  await batches(timed.log, 3);
  const deadline = Date.now() + 10_000;
  while (cpSeq(timed.checkpointPath) !== 4 && Date.now() < deadline) await sleep(20);
  t.equal(cpSeq(timed.checkpointPath), 4, 'the interval signs it without further appends');

  t.throws(() => new AuditLog({ store: timed.store, signer: keys.signer, verifier: keys.verifier, checkpointPath: timed.checkpointPath, checkpointEntries: 0 }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
});

t.test('a checkpoint that cannot be written rejects the appends, which stay committed', async (t) => {
  const dir = t.testdir();
  const env = setup(t, { checkpointPath: join(dir, 'no-such-dir', 'audit.checkpoint.json') });
  const err = await env.log.append('test.event', { kind: 'cli' }, {}).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isTyrumError(err, 'TYRUM_ERR_AUDIT_CHECKPOINT'));
  t.match(err, { details: { committed: true, through_seq: 1 } });
  t.equal(env.store.audit.count(), 1);
});

t.test('two logs on two connections to one file append into a single valid chain', async (t) => {
  const env = setup(t);
  const other = new AuditLog({ store: env.openStore(), signer: env.keys.signer, verifier: env.keys.verifier, checkpointPath: env.checkpointPath });
  for (let round = 0; round < 20; round++) {
    const pending = [
      env.log.append('test.a', { kind: 'cli' }, { round }),
      other.append('test.b', { kind: 'cli' }, { round }),
      env.log.append('test.a', { kind: 'cli' }, { round }),
    ];
    other.appendSync('test.b', { kind: 'cli' }, { round, sync: true });
    await Promise.all(pending);
  }
  await env.log.flush();
  const result = env.verify(env.openStore());
  t.equal(result.ok, true, result.reason ?? 'verifies');
  t.equal(result.entries, 80);
  t.equal(result.checkpoint?.seq, 80);
  t.same(new Set(env.log.list({ limit: 1000 }).map((e) => e.type)), new Set(['test.a', 'test.b']));
});

t.test('a second process appending concurrently extends the same chain', async (t) => {
  const env = setup(t);
  const worker = fileURLToPath(new URL('./fixtures/append-worker.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', worker, env.dbPath, env.checkpointPath, '60'], {
    env: { ...process.env, AUDIT_TEST_KEY: env.keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  let running = true;
  void exited.then(() => (running = false));
  let ours = 0;
  // Keep appending until the child is done, so the two writers really interleave; pause like
  // the child does, since SQLite's busy handler lets a writer in a tight loop starve the other.
  while (running) {
    await fill(env.log, 3, ours);
    ours += 3;
    await sleep(2);
  }
  t.equal(await exited, 0, 'worker succeeded');

  const result = env.verify();
  t.equal(result.ok, true, result.reason ?? 'verifies');
  t.equal(result.entries, ours + 60);
  t.equal(result.checkpoint?.seq, ours + 60);
  let switches = 0;
  let last: string | undefined;
  for (const row of env.store.audit.iterate()) {
    if (last !== undefined && row.type !== last) switches += 1;
    last = row.type;
  }
  t.ok(switches > 2, `the two writers' entries interleave (${switches} switches)`);
});

t.test('list pages by after_seq, filters by type and caps the limit', async (t) => {
  const env = setup(t);
  const pending: Promise<unknown>[] = [];
  for (let i = 1; i <= 1005; i++) pending.push(env.log.append(i % 5 === 0 ? 'authz.denied' : 'test.event', { kind: 'cli' }, { i }));
  await Promise.all(pending);

  t.equal(env.log.list().length, 100, 'default limit is 100');
  t.equal(env.log.list({ limit: 5000 }).length, 1000, 'limit is capped at 1000');
  const page = env.log.list({ after_seq: 10, limit: 3 });
  t.same(page.map((e) => e.seq), [11, 12, 13]);
  t.same(page[0]?.data, { i: 11 }, 'data is parsed');
  t.same(page[0]?.actor, { kind: 'cli' }, 'actor is parsed');
  const denied = env.log.list({ type: 'authz.denied', after_seq: 990 });
  t.same(denied.map((e) => e.seq), [995, 1000, 1005]);
  t.same(env.log.list({ after_seq: 1005 }), []);
  t.throws(() => env.log.list({ limit: 0 }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => env.log.list({ after_seq: -1 }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
});

t.test('entries stay valid when the database is reopened', async (t) => {
  const env = setup(t);
  await fill(env.log, 5);
  env.log.close();
  const store = env.openStore();
  const log = new AuditLog({ store, signer: env.keys.signer, verifier: env.keys.verifier, checkpointPath: env.checkpointPath });
  const next = await log.append('test.event', { kind: 'cli' }, {});
  t.equal(next.seq, 6);
  t.ok(env.verify(store).ok);
});

function readWal(dbPath: string): string {
  try {
    return readFileSync(dbPath + '-wal', 'latin1');
  } catch {
    return '';
  }
}
