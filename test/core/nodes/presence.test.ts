// PresenceRegistry (core/nodes/presence.ts): upsert on connect, throttled last-seen, disconnected
// then pruned after the window, stale entries pruned; every change announced.
import t from 'tap';
import { PresenceRegistry, PRESENCE_SEEN_RESOLUTION_MS, type PresencePeer } from '../../../core/nodes/presence.js';

const peer = (over: Partial<PresencePeer> = {}): PresencePeer => ({ connectionId: 'c1', deviceId: 'dev_a', role: 'client', remoteAddress: '127.0.0.1', device: { label: 'laptop', platform: 'linux', version: '1', mode: 'cli' }, ...over });

t.test('connections come and go; the entry stays for the window, then is pruned', async (t) => {
  let now = 1_000_000;
  const events: Array<[string, Record<string, unknown>]> = [];
  const p = new PresenceRegistry({ emit: (type, payload) => events.push([type, payload]), now: () => now, ttlMs: 30 });
  t.teardown(() => p.close());
  p.connected(peer());
  p.connected(peer({ connectionId: 'c2' }));
  t.match(p.list(), [{ device_id: 'dev_a', role: 'client', mode: 'cli', connected: true, connections: 2, connected_since: 1_000_000 }]);
  now += 1000;
  p.seen(peer());
  t.equal(events.length, 2, 'a heartbeat within the resolution is not announced');
  now += PRESENCE_SEEN_RESOLUTION_MS;
  p.seen(peer());
  t.equal(events.length, 3, 'past the resolution it is');
  t.equal(p.list()[0]!.last_seen_at, now);
  p.disconnected(peer());
  t.match(p.list(), [{ connected: true, connections: 1 }], 'one connection left');
  p.disconnected(peer({ connectionId: 'c2' }));
  t.match(p.list(), [{ connected: false, connections: 0 }]);
  await new Promise((r) => setTimeout(r, 80));
  t.same(p.list(), []);
  t.same(events.at(-1), ['presence.pruned', { device_id: 'dev_a', role: 'client', reason: 'disconnected' }]);
});

t.test('a quick reconnect keeps the entry; roles are separate entries; nodes default to mode node', async (t) => {
  const events: string[] = [];
  const p = new PresenceRegistry({ emit: (type) => events.push(type), ttlMs: 50 });
  t.teardown(() => p.close());
  p.connected(peer({ role: 'node', device: { label: 'box', platform: null, version: null } }));
  p.connected(peer());
  t.same(p.list().map((e) => [e.role, e.mode]), [['client', 'cli'], ['node', 'node']]);
  p.disconnected(peer());
  p.connected(peer());
  await new Promise((r) => setTimeout(r, 100));
  t.equal(p.list().length, 2, 'reconnected within the window: not pruned');
  t.notOk(events.includes('presence.pruned'));
});

t.test("one device in two tenants: two entries, each announced to its own tenant's clients", async (t) => {
  const events: Array<[string, string, Record<string, unknown>]> = [];
  const p = new PresenceRegistry({ emit: (type, payload, tenant) => events.push([type, tenant, payload]), ttlMs: 30 });
  t.teardown(() => p.close());
  p.connected(peer());
  p.connected(peer({ connectionId: 'c2', token: { tenant_id: 'acme' } }));
  t.same(events.map(([type, tenant]) => [type, tenant]), [['presence.upserted', 'default'], ['presence.upserted', 'acme']]);
  t.same(p.list().map((e) => [e.device_id, e.connections]), [['dev_a', 1], ['dev_a', 1]], 'presence.list (the host) shows both; neither counts the other');
  t.notOk('tenant' in p.list()[0]!, 'the listed entry has the wire shape (no tenant member)');
  p.disconnected(peer({ connectionId: 'c2', token: { tenant_id: 'acme' } }));
  await new Promise((r) => setTimeout(r, 80));
  t.same(events.slice(2).map(([type, tenant, payload]) => [type, tenant, type === 'presence.pruned' ? payload.reason : (payload.entry as { connected: boolean }).connected]), [['presence.upserted', 'acme', false], ['presence.pruned', 'acme', 'disconnected']], "acme's disconnect and prune go to acme");
  t.match(p.list(), [{ device_id: 'dev_a', connected: true, connections: 1 }], "the host's entry is untouched");
});
