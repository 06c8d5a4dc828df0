/**
 * TESTPLAN F7: X-Forwarded-For is believed only from a configured trusted proxy, and then only
 * up to the rightmost hop that is not itself a trusted proxy. Unit tests of clientAddress, then
 * the address the gateway actually audits for a refused upgrade.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { clientAddress } from '../../../core/gateway/address.js';
import { listAudit } from '../../../core/audit/index.js';
import { startTestGateway, removeHome, open, connect, RawConn, type TestGateway } from '../../helpers/gateway.js';

t.test('the X-Forwarded-For of a peer that is not a trusted proxy is ignored', async (t) => {
  t.equal(clientAddress('203.0.113.7', '6.6.6.6', []), '203.0.113.7', 'no trusted proxies at all');
  t.equal(clientAddress('203.0.113.7', '6.6.6.6', ['10.0.0.1']), '203.0.113.7', 'another address is trusted, not this peer');
  t.equal(clientAddress('203.0.113.7', ['6.6.6.6', '10.0.0.1'], ['10.0.0.1']), '203.0.113.7', 'naming a trusted proxy in the header does not make the peer one');
  t.equal(clientAddress('127.0.0.1', '6.6.6.6', []), '127.0.0.1');
  t.equal(clientAddress('203.0.113.7', undefined, ['203.0.113.7']), '203.0.113.7', 'a trusted peer without the header is itself');
  t.equal(clientAddress(undefined, '6.6.6.6', []), 'unknown', 'a socket without an address is "unknown", not the header');
});

t.test('behind a trusted proxy the client is the rightmost hop that is not a trusted proxy', async (t) => {
  const trusted = ['10.0.0.1'];
  t.equal(clientAddress('10.0.0.1', '198.51.100.4', trusted), '198.51.100.4', 'one hop');
  t.equal(clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.4', trusted), '198.51.100.4', 'what the client wrote further left is only its claim');
  t.equal(clientAddress('10.0.0.1', '6.6.6.6,198.51.100.4', trusted), '198.51.100.4', 'no space after the comma');
  t.equal(clientAddress('10.0.0.1', ['6.6.6.6', '198.51.100.4'], trusted), '198.51.100.4', 'the header repeated: the lines are joined in order');
  t.equal(clientAddress('10.0.0.1', ' 6.6.6.6 , , 198.51.100.4 ,', trusted), '198.51.100.4', 'empty entries and whitespace are ignored');
  t.equal(clientAddress('10.0.0.1', '', trusted), '10.0.0.1', 'an empty header leaves the peer');
  t.equal(clientAddress('10.0.0.1', ' , ', trusted), '10.0.0.1', 'a header of only separators leaves the peer');
});

t.test('a chain of trusted proxies is walked from the right', async (t) => {
  const trusted = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
  t.equal(clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.4, 10.0.0.3, 10.0.0.2', trusted), '198.51.100.4');
  t.equal(clientAddress('10.0.0.1', '198.51.100.4, 10.0.0.2, 6.6.6.6, 10.0.0.3', trusted), '6.6.6.6', 'an untrusted hop between trusted ones stops the walk');
  t.equal(clientAddress('10.0.0.1', '10.0.0.3, 10.0.0.2', trusted), '10.0.0.3', 'every hop trusted: the leftmost one');
});

t.test('IPv4-mapped IPv6 addresses (::ffff:) are normalized on both sides', async (t) => {
  t.equal(clientAddress('::ffff:127.0.0.1', '6.6.6.6', []), '127.0.0.1', 'a mapped peer is reported as IPv4');
  t.equal(clientAddress('::ffff:10.0.0.1', '198.51.100.4', ['10.0.0.1']), '198.51.100.4', 'a mapped peer matches an IPv4 trusted entry');
  t.equal(clientAddress('10.0.0.1', '198.51.100.4', ['::ffff:10.0.0.1']), '198.51.100.4', 'a mapped trusted entry matches an IPv4 peer');
  t.equal(clientAddress('10.0.0.1', '::ffff:198.51.100.4', ['10.0.0.1']), '198.51.100.4', 'a mapped hop is reported as IPv4');
  t.equal(clientAddress('10.0.0.1', '198.51.100.4, ::ffff:10.0.0.2', ['10.0.0.1', '10.0.0.2']), '198.51.100.4', 'a mapped trusted hop is skipped');
  t.equal(clientAddress('::1', '6.6.6.6', []), '::1', 'plain IPv6 is untouched');
});

t.test('property: an untrusted peer is always reported as itself, whatever the header says', async (t) => {
  const addr = fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((a) => `::ffff:${a}`));
  fc.assert(
    fc.property(addr, fc.array(addr, { maxLength: 5 }), fc.array(fc.ipV4(), { maxLength: 3 }), fc.option(fc.string(), { nil: undefined }), (peer, hops, trusted, junk) => {
      const norm = peer.startsWith('::ffff:') ? peer.slice(7) : peer;
      fc.pre(!trusted.includes(norm));
      const header = junk === undefined ? hops.join(', ') : [...hops, junk].join(',');
      return clientAddress(peer, header, trusted) === norm;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

t.test('property: behind a trusted proxy the result is never a hop left of the rightmost untrusted one', async (t) => {
  const proxies = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.ipV4(), fc.constantFrom(...proxies)), { minLength: 1, maxLength: 6 }), (hops) => {
      const got = clientAddress('10.0.0.1', hops.join(', '), proxies);
      const untrusted = hops.filter((h) => !proxies.includes(h));
      return untrusted.length > 0 ? got === untrusted[untrusted.length - 1] : got === hops[0];
    }),
    { numRuns: 500 },
  );
  t.pass();
});

// ---- integration --------------------------------------------------------------------------------

async function gateway(t: Test, config?: Record<string, unknown>): Promise<TestGateway> {
  const gw = await startTestGateway(config ? { config } : {});
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  return gw;
}

async function authFailures(gw: TestGateway, count: number): Promise<ReturnType<typeof listAudit>> {
  const deadline = Date.now() + 3000;
  for (;;) {
    await gw.audit.flush();
    const entries = listAudit(gw.store, { type: 'auth.failed' });
    if (entries.length >= count || Date.now() > deadline) return entries;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const BAD_TOKEN = `tyrum_0123456789abcdef_${'A'.repeat(43)}`;

t.test('a refused upgrade carrying X-Forwarded-For from an untrusted 127.0.0.1 is audited with 127.0.0.1, never the header', async (t) => {
  const gw = await gateway(t);
  const { conn: admin } = await connect(gw);
  t.teardown(() => admin.ws.terminate());

  const refused = await open(gw, { token: BAD_TOKEN, headers: { 'X-Forwarded-For': '6.6.6.6' } });
  t.notOk(refused instanceof RawConn);
  t.match(refused, { status: 401 }, 'the bad token is refused before any WebSocket exists');
  const noToken = await open(gw, { token: null, headers: { 'X-Forwarded-For': '6.6.6.6, 7.7.7.7' } });
  t.match(noToken, { status: 401 });

  const entries = await authFailures(gw, 2);
  t.equal(entries.length, 2, 'both refusals are audited');
  for (const e of entries) t.same(e.actor, { kind: 'anonymous', ip: '127.0.0.1' }, `audited actor of "${String(e.data.reason)}"`);
  t.match(entries[0]!.data, { reason: 'invalid token', token_id: '0123456789abcdef', http_status: 401 });
  const everything = JSON.stringify(listAudit(gw.store, { limit: 1000 }));
  t.notOk(everything.includes('6.6.6.6') || everything.includes('7.7.7.7'), 'the header addresses appear nowhere in the audit log');

  const event = await admin.event('auth.failed', 3000);
  t.match(event.payload, { remote_address: '127.0.0.1', http_status: 401 }, 'the auth.failed event carries the socket address too');
  t.match(await admin.request('ping', {}, 3000), { ok: true }, 'the admin connection keeps working');
});

t.test('the same upgrade through a configured trusted proxy is audited with the forwarded address', async (t) => {
  // Shows the header is read at all when it should be, so the test above is not vacuous.
  const gw = await gateway(t, { trusted_proxies: ['127.0.0.1'] });
  const refused = await open(gw, { token: BAD_TOKEN, headers: { 'X-Forwarded-For': '6.6.6.6, 198.51.100.4' } });
  t.match(refused, { status: 401 });
  const entries = await authFailures(gw, 1);
  t.same(entries.map((e) => e.actor), [{ kind: 'anonymous', ip: '198.51.100.4' }], 'the rightmost untrusted hop, not the leftmost claim');
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.terminate());
  t.match(await conn.request('ping', {}, 3000), { ok: true }, 'a good client still connects');
});
