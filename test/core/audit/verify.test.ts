import t, { type Test } from 'tap';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { canonicalJson } from '../../../core/util/canonical-json.js';
import { GENESIS_HASH, exportAudit, hashEntry, type AuditEntry } from '../../../core/audit/index.js';
import { signCheckpoint } from '../../../core/audit/checkpoint.js';
import { fill, makeKeys, rawRow, setup, tamper, type Env } from './fixtures/index.js';

/** A log of `n` committed entries (one batch, so one checkpoint at seq n). */
async function logOf(t: Test, n: number): Promise<Env> {
  const env = setup(t);
  await fill(env.log, n);
  return env;
}

/** Swap everything but seq between two rows: the entries change places. */
function swapRows(db: Database.Database, a: number, b: number): void {
  const ra = rawRow(db, a);
  const rb = rawRow(db, b);
  const set = db.prepare('UPDATE audit_entries SET ts = @ts, type = @type, actor = @actor, data = @data, prev_hash = @prev_hash, hash = @hash WHERE seq = @target');
  set.run({ ...rb, target: a });
  set.run({ ...ra, target: b });
}

/** What an attacker with the database but not the key can do: edit entry `from` and re-hash everything after it. */
function rewriteFrom(db: Database.Database, from: number, data: Record<string, unknown>): void {
  let prev = from === 1 ? GENESIS_HASH : rawRow(db, from - 1).hash;
  const rows = db.prepare('SELECT * FROM audit_entries WHERE seq >= ? ORDER BY seq').all(from) as { seq: number; ts: string; type: string; actor: string; data: string }[];
  const set = db.prepare('UPDATE audit_entries SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?');
  for (const row of rows) {
    const entry: Omit<AuditEntry, 'hash'> = { ...row, actor: JSON.parse(row.actor), data: row.seq === from ? data : JSON.parse(row.data), prev_hash: prev };
    const hash = hashEntry(entry);
    set.run(canonicalJson(entry.data), prev, hash, row.seq);
    prev = hash;
  }
}

t.test('a clean chain verifies against its checkpoint', async (t) => {
  const env = await logOf(t, 30);
  const result = env.verify();
  t.equal(result.ok, true);
  t.equal(result.entries, 30);
  t.equal(result.head_hash, env.store.audit.head()?.hash);
  t.match(result.checkpoint, { version: 1, seq: 30, count: 30, head_hash: result.head_hash, key_id: 'gateway-key' });
  t.notOk(result.first_bad);
  t.notOk(result.reason);
});

t.test('an empty log without a checkpoint verifies', async (t) => {
  const env = setup(t);
  t.same(env.verify(), { ok: true, entries: 0, head_hash: GENESIS_HASH, checkpoint: null });
});

t.test('a log that grew past its checkpoint verifies by its chain', async (t) => {
  const env = await logOf(t, 5);
  const older = readFileSync(env.checkpointPath);
  await fill(env.log, 5, 6);
  writeFileSync(env.checkpointPath, older);
  const result = env.verify();
  t.equal(result.ok, true, result.reason ?? 'verifies');
  t.equal(result.checkpoint?.seq, 5);
});

t.test('an edited entry fails as a hash mismatch naming that entry', async (t) => {
  const env = await logOf(t, 30);
  tamper(env.dbPath, (db) => db.prepare('UPDATE audit_entries SET data = ? WHERE seq = 17').run(canonicalJson({ i: 999 })));
  const result = env.verify();
  t.equal(result.ok, false);
  t.same(result.first_bad, { seq: 17, reason: 'hash mismatch (entry edited)' });
  t.equal(result.reason, 'entry 17: hash mismatch (entry edited)');
  t.equal(result.entries, 30, 'the walk still counts every row');
});

t.test('an edited type, actor or timestamp is caught the same way', async (t) => {
  for (const [column, value] of [['type', 'test.other'], ['actor', canonicalJson({ kind: 'token', id: 'x' })], ['ts', '2000-01-01T00:00:00.000Z']] as const) {
    const env = await logOf(t, 5);
    tamper(env.dbPath, (db) => db.prepare(`UPDATE audit_entries SET ${column} = ? WHERE seq = 3`).run(value));
    t.equal(env.verify().reason, 'entry 3: hash mismatch (entry edited)', column);
  }
});

t.test('stored JSON that is not the canonical text that was hashed fails', async (t) => {
  const env = await logOf(t, 5);
  tamper(env.dbPath, (db) => db.prepare('UPDATE audit_entries SET data = ? WHERE seq = 2').run('{ "i": 2 }'));
  t.match(env.verify(), { ok: false, first_bad: { seq: 2, reason: /not the canonical JSON/ } });
  tamper(env.dbPath, (db) => db.prepare('UPDATE audit_entries SET data = ? WHERE seq = 2').run('not json'));
  t.match(env.verify(), { ok: false, first_bad: { seq: 2, reason: /not the canonical JSON/ } });
});

t.test('a deleted entry in the middle fails naming the missing entry', async (t) => {
  const env = await logOf(t, 30);
  tamper(env.dbPath, (db) => db.prepare('DELETE FROM audit_entries WHERE seq = 10').run());
  const result = env.verify();
  t.equal(result.ok, false);
  t.equal(result.reason, 'entry 10: missing (entry deleted: the next stored entry is 11)');
  t.equal(result.entries, 29);
});

t.test('a deleted first entry fails naming entry 1', async (t) => {
  const env = await logOf(t, 3);
  tamper(env.dbPath, (db) => db.prepare('DELETE FROM audit_entries WHERE seq = 1').run());
  t.match(env.verify(), { ok: false, first_bad: { seq: 1, reason: /missing/ } });
});

t.test('swapped entries fail as reordered, naming the first moved entry and where it came from', async (t) => {
  const env = await logOf(t, 30);
  tamper(env.dbPath, (db) => swapRows(db, 5, 12));
  t.equal(env.verify().reason, 'entry 5: holds the contents of entry 12 (entries reordered)');
});

t.test('swapping two neighbours, including the last entry, is reported as reordering', async (t) => {
  const env = await logOf(t, 10);
  tamper(env.dbPath, (db) => swapRows(db, 9, 10));
  t.equal(env.verify().reason, 'entry 9: holds the contents of entry 10 (entries reordered)');
});

t.test('an entry edited and re-hashed alone breaks the link to the next entry', async (t) => {
  const env = await logOf(t, 30);
  tamper(env.dbPath, (db) => {
    const row = rawRow(db, 17);
    const data = { i: 999 };
    db.prepare('UPDATE audit_entries SET data = ?, hash = ? WHERE seq = 17').run(canonicalJson(data), hashEntry({ ...row, actor: JSON.parse(row.actor), data }));
  });
  const result = env.verify();
  t.equal(result.first_bad?.seq, 18);
  t.match(result.reason, /^entry 18: prev_hash does not match the hash of entry 17/);
});

t.test('an edited prev_hash fails at that entry', async (t) => {
  const env = await logOf(t, 5);
  tamper(env.dbPath, (db) => db.prepare('UPDATE audit_entries SET prev_hash = ? WHERE seq = 4').run('f'.repeat(64)));
  t.match(env.verify(), { ok: false, first_bad: { seq: 4, reason: /hash mismatch and prev_hash does not link/ } });
});

t.test('a truncated log fails naming the first missing entry, caught by the checkpoint', async (t) => {
  const env = await logOf(t, 30);
  tamper(env.dbPath, (db) => db.prepare('DELETE FROM audit_entries WHERE seq > 25').run());
  const result = env.verify();
  t.equal(result.ok, false);
  t.same(result.first_bad, { seq: 26, reason: 'missing (log truncated: the signed checkpoint records 30 entries, the log has 25)' });
  t.equal(result.entries, 25);
});

t.test('an emptied log fails as truncated from entry 1', async (t) => {
  const env = await logOf(t, 4);
  tamper(env.dbPath, (db) => db.prepare('DELETE FROM audit_entries').run());
  t.match(env.verify(), { ok: false, entries: 0, first_bad: { seq: 1, reason: /log truncated/ } });
});

t.test('a consistently re-hashed log fails at the checkpointed entry', async (t) => {
  const env = await logOf(t, 30);
  tamper(env.dbPath, (db) => rewriteFrom(db, 10, { i: 'forged' }));
  const result = env.verify();
  t.equal(result.ok, false);
  t.same(result.first_bad, { seq: 30, reason: 'hash does not match the signed checkpoint (log rewritten and re-hashed at or before entry 30)' });
});

t.test('a truncated log regrown past the checkpoint with forged entries fails', async (t) => {
  const env = await logOf(t, 10);
  tamper(env.dbPath, (db) => {
    db.prepare('DELETE FROM audit_entries WHERE seq > 6').run();
    let prev = rawRow(db, 6).hash;
    for (let seq = 7; seq <= 12; seq++) {
      const entry = { seq, ts: new Date().toISOString(), type: 'test.forged', actor: { kind: 'cli' }, data: {}, prev_hash: prev };
      const hash = hashEntry(entry);
      db.prepare('INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, ?)').run(seq, entry.ts, entry.type, '{"kind":"cli"}', '{}', prev, hash);
      prev = hash;
    }
  });
  t.match(env.verify(), { ok: false, first_bad: { seq: 10, reason: /does not match the signed checkpoint/ } });
});

t.test('a missing checkpoint fails once the log has entries', async (t) => {
  const env = await logOf(t, 3);
  rmSync(env.checkpointPath);
  const result = env.verify();
  t.equal(result.ok, false);
  t.equal(result.checkpoint, null);
  t.match(result.reason, /^no signed checkpoint at .*truncation or re-hashing of the log cannot be ruled out/);
});

t.test('a forged checkpoint fails', async (t) => {
  const env = await logOf(t, 8);
  const genuine = JSON.parse(readFileSync(env.checkpointPath, 'utf8')) as Record<string, unknown>;

  // An attacker who truncated the log lowers the checkpoint's seq to match.
  writeFileSync(env.checkpointPath, JSON.stringify({ ...genuine, seq: 5, count: 5 }));
  t.match(env.verify(), { ok: false, checkpoint: null, reason: /checkpoint signature is invalid/ }, 'altered fields');

  writeFileSync(env.checkpointPath, JSON.stringify({ ...genuine, note: 'added' }));
  t.match(env.verify(), { ok: false, reason: /checkpoint signature is invalid/ }, 'an added field');

  const head = env.store.audit.head();
  const other = signCheckpoint({ seq: 8, head_hash: head?.hash ?? '', count: 8, ts: new Date().toISOString() }, makeKeys().signer);
  writeFileSync(env.checkpointPath, JSON.stringify(other));
  t.match(env.verify(), { ok: false, reason: /checkpoint signature is invalid/ }, 'signed by another key');
});

t.test('an unreadable or malformed checkpoint fails', async (t) => {
  const env = await logOf(t, 2);
  const genuine = JSON.parse(readFileSync(env.checkpointPath, 'utf8')) as Record<string, unknown>;
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{', /not valid JSON/],
    ['not an object', '[]', /not a JSON object/],
    ['no signature', JSON.stringify({ ...genuine, signature: undefined }), /signature is missing or not base64url/],
    ['signature not base64url', JSON.stringify({ ...genuine, signature: 'a+b/' }), /signature is missing or not base64url/],
  ];
  for (const [name, text, reason] of cases) {
    writeFileSync(env.checkpointPath, text);
    t.match(env.verify(), { ok: false, checkpoint: null, reason }, name);
  }
});

t.test('a checkpoint with a valid signature but an unexpected shape fails', async (t) => {
  const env = await logOf(t, 2);
  const body = { version: 2, seq: 2, head_hash: env.store.audit.head()?.hash, count: 2, ts: 'x' };
  const signature = env.keys.signer.sign(Buffer.from(canonicalJson(body))).toString('base64url');
  writeFileSync(env.checkpointPath, JSON.stringify({ ...body, signature }));
  t.match(env.verify(), { ok: false, reason: /unexpected shape/ });
});

t.test('a checkpoint carrying an accepted tampering never verifies, and says what was found', async (t) => {
  const env = await logOf(t, 3);
  const head = env.store.audit.head()!;
  const record = { accepted_at: '2025-01-02T03:04:05.000Z', reason: 'log truncated: the signed checkpoint records 9 entries, the log ends at entry 3', previous: { seq: 9, head_hash: 'c'.repeat(64), ts: 'x' }, found: { seq: 3, head_hash: head.hash } };
  const cp = signCheckpoint({ seq: 3, head_hash: head.hash, count: 3, ts: 'x', tampered: [record] }, env.keys.signer);
  t.equal(cp.version, 2, 'a checkpoint with a tamper record is version 2');
  writeFileSync(env.checkpointPath, JSON.stringify(cp));
  const result = env.verify();
  t.match(result, { ok: false, entries: 3, tampered: [record], reason: /tampered with and the operator accepted it on 2025-01-02T03:04:05.000Z: log truncated/ });
  t.equal(result.first_bad, undefined);

  const bad = { version: 2, seq: 3, head_hash: head.hash, count: 3, ts: 'x', tampered: [{ reason: 'no date' }] };
  writeFileSync(env.checkpointPath, JSON.stringify({ ...bad, signature: env.keys.signer.sign(Buffer.from(canonicalJson(bad))).toString('base64url') }));
  t.match(env.verify(), { ok: false, reason: /unexpected shape/ }, 'a malformed tamper record');
});

t.test('chain faults are reported before checkpoint faults', async (t) => {
  const env = await logOf(t, 5);
  rmSync(env.checkpointPath);
  tamper(env.dbPath, (db) => db.prepare('UPDATE audit_entries SET type = ? WHERE seq = 2').run('test.other'));
  t.equal(env.verify().reason, 'entry 2: hash mismatch (entry edited)');
});

t.test('export yields one canonical JSON line per entry, each re-hashing to its hash', async (t) => {
  const env = await logOf(t, 4);
  const lines = [...exportAudit(env.store)];
  t.equal(lines.length, 4);
  lines.forEach((line, i) => {
    const entry = JSON.parse(line) as AuditEntry;
    t.equal(canonicalJson(entry), line);
    t.equal(entry.seq, i + 1);
    t.equal(hashEntry(entry), entry.hash);
  });
});
