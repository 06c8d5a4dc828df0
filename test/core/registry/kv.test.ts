// The host API's key-value storage: a write is visible at once to the call that made it, refused
// over quota, and commits with the store's group (no commit of its own).
import t from 'tap';
import { join } from 'node:path';
import { openStore } from '../../../core/store/index.js';
import { pluginKv } from '../../../core/registry/kv.js';

t.test('kv writes are seen at once, refused over quota, and committed with the group', async (t) => {
  const store = openStore(join(t.testdir(), 'kv.db'));
  t.teardown(() => store.close());
  store.tx(() => store.plugins.upsert({ id: 'p', version: '1.0.0', manifest: '{}', manifest_sha256: 'm', wasm_sha256: 'w', source: 'test', state: 'enabled', installed_at: 1, updated_at: 1 }));
  const kv = pluginKv(store, 'p', 16);
  const before = store.commitStats().commits;
  t.equal(kv.set('a', new Uint8Array([1, 2, 3])), true);
  t.equal(kv.set('b', new Uint8Array([4])), true);
  t.same(kv.get('a'), new Uint8Array([1, 2, 3]), 'the call that wrote it reads it back at once');
  t.equal(kv.set('big', new Uint8Array(32)), false, 'over quota: refused');
  t.equal(store.commitStats().commits, before, 'nothing committed yet: the writes wait for the group');
  await store.durable();
  t.equal(store.commitStats().commits, before + 1, 'all writes in one commit');
  t.equal(kv.set('a', null), true, 'delete');
  await store.durable();
  t.equal(kv.get('a'), null);
  t.same(kv.get('b'), new Uint8Array([4]));
});
