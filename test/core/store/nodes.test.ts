// Migration 7: node pairings (one live pairing per device, conditional transitions) and the
// token kind / device binding columns.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, type PairingRow } from '../../../core/store/index.js';
import { MIGRATIONS } from '../../../core/store/migrations.js';
import { forEachBackend } from '../../helpers/store-backends.js';

const row = (over: Partial<PairingRow> = {}): PairingRow => ({
  id: 'pair_0000000000000001',
  device_id: 'dev_a',
  pubkey: 'pk',
  state: 'awaiting_human',
  trust_level: null,
  node_name: null,
  label: 'laptop',
  platform: 'linux',
  version: '1.0.0',
  mode: 'node',
  remote_address: '127.0.0.1',
  advertised: '[]',
  allowlist: '[]',
  token_id: null,
  credential_delivered_at: null,
  requested_at: 1,
  updated_at: 1,
  resolved_at: null,
  resolved_by: null,
  reason: null,
  ...over,
});

t.test('a database at version 6 migrates: existing tokens are access tokens bound to no device', async (t) => {
  const path = join(t.testdir(), 'm.db');
  const raw = new Database(path);
  raw.pragma('journal_mode = WAL');
  raw.exec('BEGIN');
  for (const m of MIGRATIONS.filter((x) => x.version <= 6)) raw.exec(m.sql);
  raw.pragma('user_version = 6');
  raw.exec("INSERT INTO tokens (id, label, scopes, roles, kdf, salt, hash, created_at, created_by, expires_at, revoked_at, last_used_at) VALUES ('t1', '', '[\"operator.read\"]', '[\"client\"]', 'k', x'00', x'00', 1, 'cli', NULL, NULL, NULL)");
  raw.exec('COMMIT');
  raw.close();
  const s = openStore(path);
  t.teardown(() => s.close());
  t.match(s.tokens.get('t1'), { kind: 'access', device_id: null });
  t.same(s.pairings.list(undefined, 10), []);
});

forEachBackend(t, 'one live pairing per device; denied and revoked ones stay as history', async (t: Test, { repos: s, tx }) => {
  tx(() => s.pairings.insert(row()));
  t.throws(() => tx(() => s.pairings.insert(row({ id: 'pair_0000000000000002' }))), /UNIQUE/, 'a second live pairing for the device is refused');
  t.ok(tx(() => s.pairings.transition('pair_0000000000000001', ['awaiting_human'], { state: 'denied', resolved_at: 2, updated_at: 2 })));
  tx(() => s.pairings.insert(row({ id: 'pair_0000000000000002', requested_at: 3 })));
  t.same(s.pairings.list(undefined, 10).map((r) => [r.id, r.state]), [['pair_0000000000000002', 'awaiting_human'], ['pair_0000000000000001', 'denied']]);
  t.equal(s.pairings.live('dev_a')?.id, 'pair_0000000000000002');
  t.equal(s.pairings.countAwaiting(), 1);
  t.throws(() => tx(() => s.pairings.insert(row({ id: 'bad', device_id: 'dev_b' }))), /CHECK/, 'pairing ids are pair_*');
});

forEachBackend(t, 'transitions are conditional: of two racing resolutions one wins', async (t: Test, { repos: s, tx }) => {
  tx(() => s.pairings.insert(row()));
  const approve = tx(() => s.pairings.transition('pair_0000000000000001', ['awaiting_human'], { state: 'approved', node_name: 'laptop', updated_at: 2 }));
  const deny = tx(() => s.pairings.transition('pair_0000000000000001', ['awaiting_human'], { state: 'denied', updated_at: 2 }));
  t.match(approve, { state: 'approved', node_name: 'laptop' });
  t.equal(deny, undefined, 'the loser changes nothing');
  t.equal(s.pairings.byName('laptop')?.id, 'pair_0000000000000001');
  t.equal(tx(() => s.pairings.transition('pair_0000000000000001', ['approved'], { id: 'x' } as never)), undefined, 'a column that may not change is ignored');
  tx(() => s.pairings.insert(row({ id: 'pair_0000000000000003', device_id: 'dev_b' })));
  t.throws(() => tx(() => s.pairings.transition('pair_0000000000000003', ['awaiting_human'], { state: 'approved', node_name: 'laptop' })), /UNIQUE/, 'approved node names are unique');
});
