/**
 * Live (not outbox) events carry their tenant (docs/tenancy.md "Live events"): a tenant's
 * `tool.invoked` and a tenant client's presence reach that tenant's clients only, the host's
 * ones the host's clients only; `auth.failed` stays with the host, even for a known token of a
 * tenant. Two (and more) real WebSocket clients of different tenants.
 */
import t from 'tap';
import { startTestGateway, removeHome, connect, open, RawConn } from '../../helpers/gateway.js';
import { CLI, createTenant, ok } from './helpers.js';
import { installEnabled } from '../registry/helpers.js';

const TEXT_UTILS = new URL('../../../plugins/text-utils/build/', import.meta.url).pathname;

/** Live events of `type` a connection received (no outbox cursor: a fresh id each). */
const events = (c: RawConn, type: string): Array<Record<string, unknown>> => c.frames.filter((f) => f.event_id !== undefined && f.type === type).map((f) => f.payload as Record<string, unknown>);
const presenceOf = (c: RawConn, deviceId: string) => events(c, 'presence.upserted').filter((p) => (p.entry as { device_id: string }).device_id === deviceId);

async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test("tool.invoked and presence reach their own tenant's clients only; auth.failed stays with the host", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, TEXT_UTILS);
  const acme = await createTenant(gw, 'acme');
  const globex = await createTenant(gw, 'globex');
  // A tenant calls a plugin under its own grant (the host's gives it nothing).
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI, 'acme');

  // The host's client and one client of each tenant listen from the start.
  const host = await connect(gw);
  t.teardown(() => host.conn.ws.close());
  const a = await connect(gw, { token: acme.token });
  t.teardown(() => a.conn.ws.close());
  const g = await connect(gw, { token: globex.token });
  t.teardown(() => g.conn.ws.close());

  // Presence: a second client of acme connects, then a second client of the host.
  const a2 = await connect(gw, { token: acme.token });
  const host2 = await connect(gw);
  t.teardown(() => host2.conn.ws.close());
  await until("acme's client hears of its second client", () => presenceOf(a.conn, a2.device.device_id).length > 0);
  await until("the host's client hears of its second client", () => presenceOf(host.conn, host2.device.device_id).length > 0);
  ok(await host.conn.request('ping'));
  ok(await g.conn.request('ping'));
  t.same(presenceOf(host.conn, a2.device.device_id), [], "an acme client's presence is not pushed to the host's clients");
  t.same(presenceOf(host.conn, a.device.device_id), [], 'nor the first one');
  t.same(presenceOf(g.conn, a2.device.device_id), [], 'nor to another tenant');
  t.same(presenceOf(a.conn, host2.device.device_id), [], "the host's presence is not pushed to a tenant");
  t.same(presenceOf(g.conn, host2.device.device_id), [], 'to no tenant');
  // A disconnect is announced the same way (connected: false).
  a2.conn.ws.close();
  await until("acme hears its client's disconnect", () => presenceOf(a.conn, a2.device.device_id).some((p) => (p.entry as { connected: boolean }).connected === false));
  ok(await host.conn.request('ping'));
  t.same(presenceOf(host.conn, a2.device.device_id), [], 'the disconnect is not pushed to the host either');
  // presence.list is a host operation: the host sees every device connected to its edge.
  const listed = ok<{ entries: Array<{ device_id: string }> }>(await host.conn.request('presence.list', {})).entries.map((e) => e.device_id);
  t.ok(listed.includes(a.device.device_id) && listed.includes(host2.device.device_id), "the host's presence.list shows the tenant's devices as well as its own");

  // tool.invoked: each caller's tenant hears of its own calls only.
  const aRun = ok<{ state: string }>(await a.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'acme words here' } }));
  t.equal(aRun.state, 'succeeded');
  await until('acme hears of its call', () => events(a.conn, 'tool.invoked').find((p) => p.token_id === acme.tokenId));
  const hostRun = ok<{ state: string }>(await host.conn.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'host words' } }));
  t.equal(hostRun.state, 'succeeded');
  await until('the host hears of its call', () => events(host.conn, 'tool.invoked').find((p) => p.token_id !== acme.tokenId));
  ok(await a.conn.request('ping'));
  ok(await g.conn.request('ping'));
  t.same(events(host.conn, 'tool.invoked').filter((p) => p.token_id === acme.tokenId), [], "acme's tool.invoked is not pushed to the host's clients");
  t.equal(events(a.conn, 'tool.invoked').length, 1, "acme's client got its own call only, not the host's");
  t.same(events(g.conn, 'tool.invoked'), [], 'another tenant got neither');
  t.match(events(a.conn, 'tool.invoked')[0], { tool_id: 'text-utils.word_count', ok: true, token_id: acme.tokenId });

  // auth.failed: an unknown token, and a known (revoked) token of acme, are the host's edge failures.
  const unknown = await open(gw, { token: 'tyrum_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
  t.notOk(unknown instanceof RawConn, 'an unknown token is refused');
  const child = ok<{ token: string; info: { token_id: string } }>(await a.conn.request('token.create', { scopes: ['operator.read'], label: 'acme short-lived' }));
  ok(await a.conn.request('token.revoke', { token_id: child.info.token_id }));
  const revoked = await open(gw, { token: child.token });
  t.notOk(revoked instanceof RawConn, "acme's revoked token is refused");
  await until('the host hears of both failures', () => events(host.conn, 'auth.failed').length >= 2);
  t.ok(events(host.conn, 'auth.failed').some((p) => p.token_id === child.info.token_id), "the host's client sees the failure of acme's token (its edge)");
  ok(await a.conn.request('ping'));
  t.same(events(a.conn, 'auth.failed'), [], 'acme is not told of failures at the edge, even with its own token');
  t.same(events(g.conn, 'auth.failed'), [], 'nor is another tenant');
});
