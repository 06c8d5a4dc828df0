// Secrets are bound to origins (scheme, host, port), not hosts: a bare host means https on port
// 443 only, plain http must be named (http://host:port), and every redirect is checked again.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { sandboxReason } from '../../../sandbox/index.js';
import { answer, decode, harness, openSecrets, rejection, rule, startServer } from './helpers.js';

const TEMPLATE = { authorization: 'Bearer {{secret:API_TOKEN}}' };

t.test('a redirect from one granted port to another on the same host does not carry the secret: refused', async (t) => {
  const env = openSecrets(t);
  const value = `VALUE-${randomBytes(16).toString('hex')}`;
  const b = await startServer(t, answer(200, 'port B'));
  const a = await startServer(t, (_req, res) => res.writeHead(307, { location: `${b.origin}/next` }).end());
  env.secrets.set('API_TOKEN', Buffer.from(value), [a.origin]);
  const egress = [rule('127.0.0.1', a.port, ['GET']), rule('127.0.0.1', b.port, ['GET'])];
  // The plugin's grant names both origins; the handle is bound to port A only.
  const h = harness(env, { egress, secrets: [{ name: 'API_TOKEN', destinations: [a.origin, b.origin] }] });
  const e = await rejection(t, h.call(`${a.origin}/start`, { headers: TEMPLATE }));
  t.equal(e.code, 'TYRUM_ERR_SANDBOX_DENIED');
  t.equal(sandboxReason(e), 'capability_denied');
  t.equal(e.details?.['egress'], 'secret_redirect');
  t.match(e.message, `a redirect to ${b.origin} would carry secret handle API_TOKEN`);
  t.equal(a.requests[0]?.headers['authorization'], `Bearer ${value}`, 'port A, the bound origin, received it');
  t.equal(b.connections, 0, 'port B saw no connection at all');
  t.notMatch(JSON.stringify(h.records), value);

  // The same when the handle allows both but the plugin's grant names port A only.
  env.secrets.set('API_TOKEN', Buffer.from(value), [a.origin, b.origin]);
  const narrow = harness(env, { egress, secrets: [{ name: 'API_TOKEN', destinations: [a.origin] }] });
  t.equal((await rejection(t, narrow.call(`${a.origin}/start`, { headers: TEMPLATE }))).details?.['egress'], 'secret_redirect');
  t.equal(b.connections, 0);

  // Bound and granted for both origins: the redirect is followed and checked again, and B gets it.
  const both = harness(env, { egress, secrets: [{ name: 'API_TOKEN', destinations: [a.origin, b.origin] }] });
  const res = await both.call(`${a.origin}/start`, { headers: TEMPLATE });
  t.equal(decode(res.body), 'port B');
  t.equal(b.requests[0]?.headers['authorization'], `Bearer ${value}`);
  t.same(
    both.records.map((r) => r.secrets),
    [['API_TOKEN'], ['API_TOKEN']],
  );
});

t.test('a bare host (as every binding stored before origins) means https on port 443: never plain http, never another port', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200));
  env.secrets.set('API_TOKEN', Buffer.from(`VALUE-${randomBytes(16).toString('hex')}`), ['127.0.0.1']);
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, ['GET'])], secrets: [{ name: 'API_TOKEN', destinations: ['127.0.0.1'] }] });
  const e = await rejection(t, h.call(`${srv.origin}/`, { headers: TEMPLATE }));
  t.equal(e.details?.['egress'], 'secret_destination');
  t.match(e.message, `secret handle API_TOKEN may not be sent to http://127.0.0.1:${srv.port}`);
  // An https binding does not allow the same host and port over http either (no downgrade).
  env.secrets.set('API_TOKEN', Buffer.from(`VALUE-${randomBytes(16).toString('hex')}`), [`https://127.0.0.1:${srv.port}`]);
  const https = harness(env, { egress: [rule('127.0.0.1', srv.port, ['GET'])], secrets: [{ name: 'API_TOKEN', destinations: [`https://127.0.0.1:${srv.port}`] }] });
  t.equal((await rejection(t, https.call(`${srv.origin}/`, { headers: TEMPLATE }))).details?.['egress'], 'secret_destination', 'https binding, http request: refused');
  t.equal(srv.connections, 0, 'nothing was sent');
});

t.test('an https binding is not followed through a redirect to plain http on the same host and port', async (t) => {
  const env = openSecrets(t);
  const value = `VALUE-${randomBytes(16).toString('hex')}`;
  const plain = await startServer(t, answer(200, 'downgraded'));
  // The first hop: bound and granted over http, redirecting to the same host over http on the
  // port the handle names only with https.
  const first = await startServer(t, (_req, res) => res.writeHead(302, { location: `${plain.origin}/` }).end());
  env.secrets.set('API_TOKEN', Buffer.from(value), [first.origin, `https://127.0.0.1:${plain.port}`]);
  const h = harness(env, {
    egress: [rule('127.0.0.1', first.port, ['GET']), rule('127.0.0.1', plain.port, ['GET'])],
    secrets: [{ name: 'API_TOKEN', destinations: [first.origin, `https://127.0.0.1:${plain.port}`] }],
  });
  const e = await rejection(t, h.call(`${first.origin}/`, { headers: TEMPLATE }));
  t.equal(e.details?.['egress'], 'secret_redirect');
  t.equal(plain.connections, 0);
});

t.test('an explicit http:// origin binding sends the secret to that origin', async (t) => {
  const env = openSecrets(t);
  const value = `VALUE-${randomBytes(16).toString('hex')}`;
  const srv = await startServer(t, answer(200, 'ok'));
  const handle = env.secrets.set('API_TOKEN', Buffer.from(value), [`HTTP://127.0.0.1:${srv.port}/`]);
  t.same(handle.destinations, [srv.origin], 'stored as the normalised origin');
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, ['GET'])], secrets: [{ name: 'API_TOKEN', destinations: [srv.origin] }] });
  const res = await h.call(`${srv.origin}/x`, { headers: TEMPLATE });
  t.equal(res.status, 200);
  t.equal(srv.requests[0]?.headers['authorization'], `Bearer ${value}`);
  t.same(h.records[0]?.secrets, ['API_TOKEN']);
});
