// Presence (core/gateway/presence.ts): devices and token last uses seen at handshakes are noted,
// not written, and written together by flush(); a known unchanged device seen within a minute is
// not noted again. The gateway flushes on an interval and at close (handshake.test.ts sees the row).
import t from 'tap';
import { join } from 'node:path';
import { openStore } from '../../../core/store/index.js';
import { TokenService } from '../../../core/auth/tokens.js';
import { Presence, DEVICE_SEEN_RESOLUTION_MS } from '../../../core/gateway/presence.js';

const DEV = { device_id: 'dev_abc', pubkey: 'pk', role: 'client', label: 'laptop', platform: 'linux', version: '1.0.0' };

t.test('sightings are written only by flush, devices and last uses in one transaction', async (t) => {
  const store = openStore(join(t.testdir(), 'p.db'));
  t.teardown(() => store.close());
  let now = 1_700_000_000_000;
  const tokens = new TokenService(store, () => now);
  const p = new Presence(store, tokens, () => now);
  const a = await tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  t.ok(await tokens.authenticate(a.token));
  p.device(DEV);
  t.equal(p.pending, 1);
  t.equal(store.devices.get(DEV.device_id), undefined, 'nothing written at the handshake');
  t.equal(store.tokens.get(a.record.id)?.last_used_at, null);
  // Outer transactions (commits); a nested one is a savepoint of its caller's.
  let txs = 0;
  let depth = 0;
  const tx = store.tx.bind(store);
  store.tx = ((fn: () => unknown) => {
    if (depth === 0) txs++;
    depth++;
    try {
      return tx(fn);
    } finally {
      depth--;
    }
  }) as typeof store.tx;
  p.flush();
  t.equal(txs, 1, 'one outer transaction for both');
  t.match(store.devices.get(DEV.device_id), { ...DEV, first_seen_at: now, last_seen_at: now });
  t.equal(store.tokens.get(a.record.id)?.last_used_at, now);
  t.equal(p.pending, 0);

  now += 1_000;
  p.device(DEV);
  t.equal(p.pending, 0, 'a known, unchanged device seen within a minute is not noted');
  p.device({ ...DEV, version: '1.0.1' });
  t.equal(p.pending, 1, 'a changed one is');
  p.flush();
  t.match(store.devices.get(DEV.device_id), { version: '1.0.1', first_seen_at: now - 1_000, last_seen_at: now });
  now += DEVICE_SEEN_RESOLUTION_MS;
  p.device({ ...DEV, version: '1.0.1' });
  t.equal(p.pending, 1, 'an unchanged one seen a minute later is');
  txs = 0;
  p.flush();
  p.flush();
  t.equal(txs, 1, 'an empty flush opens no transaction');
});
