// D6: a canary secret reaches its bound destination and nothing else: not another granted host,
// not a plugin without the handle, not the plugin itself (echoes are redacted), not the records.
// The local servers speak plain HTTP, so the secret is bound to their origins with an explicit
// http:// (a bare host would mean https on port 443 only).
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { SandboxPool, sandboxReason } from '../../../sandbox/index.js';
import { loadFixture, str, text } from '../../sandbox/helpers.js';
import { answer, decode, harness, openSecrets, rejection, rule, startServer, type SecretsEnv, type TestServer } from './helpers.js';

const L = '[REDACTED:CANARY_TOKEN]';

interface Canary {
  env: SecretsEnv;
  value: string;
  /** The bound destination (http://127.0.0.1:<port>). */
  bound: TestServer;
  /** Another granted host (b.test, pinned to 127.0.0.1), not a destination of the secret. */
  other: TestServer;
  h: ReturnType<typeof harness>;
}

async function setup(t: Test, echo = false): Promise<Canary> {
  const env = openSecrets(t);
  const value = `CANARY-${randomBytes(16).toString('hex')}`;
  const bound = await startServer(t, (req, res) => {
    const auth = String(req.headers['authorization'] ?? '');
    if (!echo) return answer(200, 'ok')(req, res);
    const b = Buffer.from(auth);
    if (req.url === '/gzip') {
      res.writeHead(200, { 'content-encoding': 'gzip', 'x-echo': auth }).end(gzipSync(`echo ${auth}`));
      return;
    }
    res.writeHead(200, { 'x-echo': auth, 'x-echo-b64': b.toString('base64'), [`x-${auth.replace(/[^A-Za-z0-9-]/g, '')}`]: 'as a name' });
    res.end(JSON.stringify({ raw: auth, b64: b.toString('base64'), hex: b.toString('hex'), url: encodeURIComponent(auth), nested: JSON.stringify({ auth }) }));
  });
  const other = await startServer(t, answer(200, 'other'));
  env.secrets.set('CANARY_TOKEN', Buffer.from(value), [bound.origin]);
  env.secrets.set('OTHER_PLUGIN_TOKEN', Buffer.from(`OTHER-${randomBytes(16).toString('hex')}`), [bound.origin]);
  const h = harness(
    env,
    {
      egress: [rule('127.0.0.1', bound.port, ['GET', 'POST']), rule('b.test', other.port, ['GET', 'POST'])],
      secrets: [{ name: 'CANARY_TOKEN', destinations: [bound.origin] }],
    },
    { 'b.test': ['127.0.0.1'] },
    { allowPrivateAddress: (host) => host === 'b.test' },
  );
  return { env, value, bound, other, h };
}

t.test('the canary is injected only into a request to its bound destination (D6)', async (t) => {
  const c = await setup(t);
  const res = await c.h.call(`${c.bound.origin}/api`, { headers: { Authorization: 'Bearer {{secret:CANARY_TOKEN}}', 'X-Plain': 'literal' } });
  t.equal(res.status, 200);
  t.equal(c.bound.requests[0]?.headers['authorization'], `Bearer ${c.value}`, 'the destination received the value');
  t.equal(c.bound.requests[0]?.headers['x-plain'], 'literal');
  t.same(c.h.records[0]?.secrets, ['CANARY_TOKEN'], 'the record names the handle');

  const toOther = await rejection(t, c.h.call(`http://b.test:${c.other.port}/steal`, { headers: { Authorization: 'Bearer {{secret:CANARY_TOKEN}}' } }));
  t.equal(sandboxReason(toOther), 'capability_denied');
  t.equal(toOther.details?.['egress'], 'secret_destination');
  t.match(toOther.message, `secret handle CANARY_TOKEN may not be sent to http://b.test:${c.other.port}`);
  t.equal(c.other.connections, 0, 'the other granted host saw zero connections');
  t.notMatch(JSON.stringify(c.h.records), c.value, 'records never hold the value');
});

t.test('the plugin right and the handle\'s own destinations must both allow the host (intersection)', async (t) => {
  const c = await setup(t);
  // The plugin's right claims b.test, but the handle is bound to 127.0.0.1 only.
  const wide = harness(
    c.env,
    { egress: [rule('b.test', c.other.port, ['GET'])], secrets: [{ name: 'CANARY_TOKEN', destinations: [`http://b.test:${c.other.port}`, c.bound.origin] }] },
    { 'b.test': ['127.0.0.1'] },
    { allowPrivateAddress: () => true },
  );
  const e = await rejection(t, wide.call(`http://b.test:${c.other.port}/`, { headers: { 'x-key': '{{secret:CANARY_TOKEN}}' } }));
  t.equal(e.details?.['egress'], 'secret_destination');
  // And the other way round: bound to the host, but the plugin's right does not list it.
  const narrow = harness(c.env, { egress: [rule('127.0.0.1', c.bound.port, ['GET'])], secrets: [{ name: 'CANARY_TOKEN', destinations: ['api.example.com'] }] });
  t.equal((await rejection(t, narrow.call(`${c.bound.origin}/`, { headers: { 'x-key': '{{secret:CANARY_TOKEN}}' } }))).details?.['egress'], 'secret_destination');
  t.equal(c.other.connections + c.bound.connections, 0);
});

t.test('another plugin\'s handle, an unknown handle and misplaced or malformed templates are denied (D6)', async (t) => {
  const c = await setup(t);
  const url = `${c.bound.origin}/`;
  const cases: Array<[Parameters<typeof c.h.call>[1], string, RegExp]> = [
    [{ headers: { authorization: '{{secret:OTHER_PLUGIN_TOKEN}}' } }, 'secret_not_granted', /secret handle OTHER_PLUGIN_TOKEN is not granted to this plugin/],
    [{ headers: { authorization: '{{secret:NOT_SET_ANYWHERE}}' } }, 'secret_not_granted', /NOT_SET_ANYWHERE/],
    [{ headers: { '{{secret:CANARY_TOKEN}}': 'x' } }, 'template_misplaced', /header names/],
    [{ method: 'POST', body: 'token={{secret:CANARY_TOKEN}}' }, 'template_misplaced', /not in the body/],
    [{ headers: { authorization: '{{secret:canary_token}}' } }, 'template_malformed', /does not name a valid secret handle/],
    [{ headers: { authorization: '{{ secret:CANARY_TOKEN }}' } }, 'template_malformed', /malformed/],
  ];
  for (const [init, reason, message] of cases) {
    const e = await rejection(t, c.h.call(url, init));
    t.equal(e.details?.['egress'], reason, JSON.stringify(init));
    t.match(e.message, message);
    t.notMatch(e.message, c.value);
  }
  const inUrl = await rejection(t, c.h.call(`${c.bound.origin}/?k={{secret:CANARY_TOKEN}}`));
  t.equal(inUrl.details?.['egress'], 'template_misplaced');
  t.match(inUrl.message, /not in the URL/);
  const granted = harness(c.env, { egress: [rule('127.0.0.1', c.bound.port, ['GET'])], secrets: [{ name: 'DELETED_TOKEN', destinations: [c.bound.origin] }] });
  t.equal((await rejection(t, granted.call(url, { headers: { a: '{{secret:DELETED_TOKEN}}' } }))).details?.['egress'], 'secret_missing');
  t.equal(c.bound.connections, 0, 'no refused request connected');
});

t.test('a destination echoing the secret in headers and body is redacted before it reaches the plugin (D6)', async (t) => {
  const c = await setup(t, true);
  const res = await c.h.call(`${c.bound.origin}/echo`, { headers: { authorization: '{{secret:CANARY_TOKEN}}' } });
  const body = decode(res.body);
  const all = JSON.stringify(res.headers) + body;
  t.notMatch(all, c.value, 'no raw value');
  for (const enc of [Buffer.from(c.value).toString('base64'), Buffer.from(c.value).toString('hex')]) t.notMatch(all, enc);
  t.equal(res.headers?.['x-echo'], L);
  t.equal(res.headers?.['x-echo-b64'], L);
  t.ok(Object.keys(res.headers ?? {}).some((k) => k.includes(L)), 'header names are redacted too');
  t.same(JSON.parse(body), { raw: L, b64: L, hex: L, url: L, nested: JSON.stringify({ auth: L }) });
  t.equal(res.headers?.['content-length'], String(res.body?.byteLength), 'length matches the redacted body');
  const gz = await c.h.call(`${c.bound.origin}/gzip`, { headers: { authorization: '{{secret:CANARY_TOKEN}}' } });
  t.equal(decode(gz.body), `echo ${L}`, 'a compressed echo is decoded and redacted');
});

t.test('a plugin that somehow holds the canary value cannot send it to a host the handle is not bound to (D6)', async (t) => {
  const c = await setup(t);
  const b64 = Buffer.from(c.value).toString('base64');
  const attempts: Array<[string, Parameters<typeof c.h.call>[1]]> = [
    [`http://b.test:${c.other.port}/?leak=${c.value}`, {}],
    [`http://b.test:${c.other.port}/`, { method: 'POST', body: JSON.stringify({ leak: b64 }) }],
    [`http://b.test:${c.other.port}/`, { headers: { 'x-leak': Buffer.from(c.value).toString('hex') } }],
  ];
  for (const [url, init] of attempts) {
    const e = await rejection(t, c.h.call(url, init));
    t.equal(e.details?.['egress'], 'secret_value_in_request', url);
    t.match(e.message, 'carries the value of secret handle CANARY_TOKEN');
    t.notMatch(e.message, c.value);
  }
  t.equal(c.other.connections, 0);
  t.notMatch(JSON.stringify(c.h.records), c.value, 'the refused URL is recorded redacted');
  t.match(c.h.records[0]?.url, L);
});

t.test('a redirect that would carry a secret to an origin it is not bound to is refused; literal credentials do not follow a cross-origin redirect', async (t) => {
  const c = await setup(t);
  const hop = await startServer(t, (req, res) => {
    res.writeHead(302, { location: `http://b.test:${c.other.port}/landed` }).end();
  });
  c.env.secrets.set('CANARY_TOKEN', Buffer.from(c.value), [hop.origin]);
  const h = harness(
    c.env,
    {
      egress: [rule('127.0.0.1', hop.port, ['GET']), rule('b.test', c.other.port, ['GET'])],
      secrets: [{ name: 'CANARY_TOKEN', destinations: [hop.origin, `http://b.test:${c.other.port}`] }],
    },
    { 'b.test': ['127.0.0.1'] },
    { allowPrivateAddress: (host) => host === 'b.test' },
  );
  const e = await rejection(t, h.call(`${hop.origin}/start`, { headers: { 'x-api-key': '{{secret:CANARY_TOKEN}}', 'x-trace': 'keep' } }));
  t.equal(sandboxReason(e), 'capability_denied');
  t.equal(e.details?.['egress'], 'secret_redirect');
  t.match(e.message, `a redirect to http://b.test:${c.other.port} would carry secret handle CANARY_TOKEN`);
  t.equal(hop.requests[0]?.headers['x-api-key'], c.value, 'first hop: the bound destination gets the value');
  t.equal(c.other.connections, 0, 'the redirect target saw no connection');
  t.match(h.records, [{ hop: 0, status: 302, secrets: ['CANARY_TOKEN'] }, { hop: 1, denied: 'secret_redirect' }]);

  // Without a secret the redirect is followed; a literal Authorization is dropped cross-origin.
  const res = await h.call(`${hop.origin}/start`, { headers: { authorization: 'Basic literal', 'x-trace': 'keep' } });
  t.equal(decode(res.body), 'other');
  const landed = c.other.requests[0]!;
  t.equal(landed.url, '/landed');
  t.equal(landed.headers['authorization'], undefined, 'a literal Authorization does not follow a cross-origin redirect');
  t.equal(landed.headers['x-trace'], 'keep');
});

t.test('through a real sandbox: the plugin output never contains the canary, and a refused call says why (D6)', async (t) => {
  const c = await setup(t, true);
  const pool = new SandboxPool({ workers: 1 });
  t.teardown(() => pool.close());
  await loadFixture(pool, 'plugin', 'http', ['fetch', 'fetch_status'], { hostApi: { egress: c.h.egress } });
  const descriptor = (url: string) => text(JSON.stringify({ url, method: 'GET', headers: { Authorization: 'Bearer {{secret:CANARY_TOKEN}}' } }));
  const ok = await pool.call('plugin', 'fetch', descriptor(`${c.bound.origin}/echo`));
  const out = str(ok.output);
  t.notMatch(out, c.value);
  t.match(out, L);
  t.equal(c.bound.requests[0]?.headers['authorization'], `Bearer ${c.value}`);
  const e = await rejection(t, pool.call('plugin', 'fetch', descriptor(`http://b.test:${c.other.port}/`)));
  t.equal(sandboxReason(e), 'capability_denied');
  t.equal(e.details?.['egress'], 'secret_destination', 'the egress reason survives the sandbox boundary');
  t.notMatch(String(e.message), c.value);
  t.equal(c.other.connections, 0);
  c.env.store.close();
  for (const f of [c.env.dbPath, `${c.env.dbPath}-wal`].filter(existsSync)) t.equal(readFileSync(f).indexOf(Buffer.from(c.value)), -1, 'nor in the database');
});
