import t from 'tap';
import { gzipSync } from 'node:zlib';
import { sandboxReason } from '../../../sandbox/index.js';
import { answer, decode, harness, openSecrets, rejection, rule, startServer } from './helpers.js';

const GET = ['GET'];

t.test('a request to an exactly granted IP literal (127.0.0.1) goes through with status, headers and body (D4)', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(201, 'hello', { 'x-reply': 'yes' }));
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, ['GET', 'POST'])], secrets: [] });
  const res = await h.call(`${srv.origin}/path?q=1#frag`, { headers: { accept: 'text/plain' } });
  t.equal(res.status, 201);
  t.equal(decode(res.body), 'hello');
  t.equal(res.headers?.['x-reply'], 'yes');
  t.equal(res.headers?.['content-length'], '5');
  t.equal(srv.requests[0]?.url, '/path?q=1', 'the fragment is not sent');
  t.equal(srv.requests[0]?.headers['host'], `127.0.0.1:${srv.port}`);
  const post = await h.call(`${srv.origin}/up`, { method: 'post', body: 'payload' });
  t.equal(post.status, 201);
  t.equal(srv.requests[1]?.method, 'POST');
  t.equal(srv.requests[1]?.body.toString(), 'payload');
  t.same(h.resolved, [], 'an IP literal is not resolved');
  t.match(h.records, [
    { pluginKey: 'plugin', method: 'GET', url: `${srv.origin}/path?q=1`, hop: 0, status: 201, bytes_out: 0, bytes_in: 5, address: '127.0.0.1', secrets: [] },
    { method: 'POST', status: 201, bytes_out: 7 },
  ]);
});

t.test('a host, method, scheme or port that is not granted is denied and no connection is attempted (D4)', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200, 'should not be reached'));
  const other = await startServer(t, answer(200, 'should not be reached'));
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, GET)], secrets: [] }, { localhost: ['127.0.0.1'] });
  const cases: Array<[string, string, string, RegExp]> = [
    [`http://localhost:${srv.port}/`, 'GET', 'host_not_granted', /egress to http:\/\/localhost:\d+ is not granted/],
    [`${srv.origin}/`, 'POST', 'method_not_granted', /egress POST to http:\/\/127\.0\.0\.1:\d+ is not granted \(granted: GET\)/],
    [`${srv.origin}/`, 'DELETE', 'method_not_granted', /DELETE/],
    [`https://127.0.0.1:${srv.port}/`, 'GET', 'host_not_granted', /https:\/\/127\.0\.0\.1/],
    [`${other.origin}/`, 'GET', 'host_not_granted', new RegExp(`127\\.0\\.0\\.1:${other.port} is not granted`)],
    [`ftp://127.0.0.1:${srv.port}/`, 'GET', 'scheme', /scheme ftp is not allowed/],
    [`file:///etc/passwd`, 'GET', 'scheme', /scheme file/],
    [`http://user:pw@127.0.0.1:${srv.port}/`, 'GET', 'userinfo', /credentials in the URL/],
    ['not a url', 'GET', 'invalid_url', /does not parse/],
    [`http://[::1]:${srv.port}/`, 'GET', 'host_not_granted', /\[::1\]/],
    [`http://[::ffff:127.0.0.1]:${srv.port}/`, 'GET', 'host_not_granted', /not granted/],
    [`http://2130706433:${srv.port}/`, 'POST', 'method_not_granted', /127\.0\.0\.1/], // decimal form of 127.0.0.1 is the same host
  ];
  for (const [url, method, reason, message] of cases) {
    const e = await rejection(t, h.call(url, { method }));
    t.equal(sandboxReason(e), 'capability_denied', `${method} ${url}`);
    t.equal(e.code, 'TYRUM_ERR_SANDBOX_DENIED');
    t.equal(e.details?.['egress'], reason, `${method} ${url}: ${reason}`);
    t.match(e.message, message);
  }
  t.equal(srv.connections, 0, 'the granted server saw zero connections');
  t.equal(other.connections, 0, 'the other server saw zero connections');
  t.same(h.resolved, [], 'nothing was even resolved');
  t.equal(h.records.length, cases.length, 'every refusal is recorded');
  t.ok(h.records.every((r) => r.denied !== undefined && r.status === null && r.address === undefined));
});

t.test('a granted host name that resolves to a loopback, private, metadata or mapped address is denied before connecting (D4)', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200, 'should not be reached'));
  const dns: Record<string, string[]> = {
    'lo.test': ['127.0.0.1'],
    'ten.test': ['10.0.0.1'],
    'meta.test': ['169.254.169.254'],
    'v6lo.test': ['::1'],
    'mapped.test': ['::ffff:127.0.0.1'],
    'nat64.test': ['64:ff9b::a9fe:a9fe'],
    'cgnat.test': ['100.64.1.1'],
    'mixed.test': ['93.184.216.34', '192.168.0.10'],
    'ula.test': ['fd00::1'],
  };
  const names = Object.keys(dns);
  const h = harness(env, { egress: names.map((n) => rule(n, srv.port, GET)), secrets: [] }, dns);
  for (const name of names) {
    const e = await rejection(t, h.call(`http://${name}:${srv.port}/latest/meta-data/`));
    t.equal(sandboxReason(e), 'capability_denied', name);
    t.equal(e.details?.['egress'], 'private_address', name);
    t.match(e.message, new RegExp(`egress to ${name.replace('.', '\\.')} refused: it resolves to the .* address`), name);
  }
  t.equal(srv.connections, 0, 'zero connections: lo.test and mapped.test would have reached this server');
  t.same(h.resolved, names, 'each name resolved once');
});

t.test('localhost and the metadata address are refused unless the exact IP literal is granted (D4)', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200, 'ok'));
  // The real resolver: "localhost" really resolves to loopback, and a name grant is not an address grant.
  const h = harness(env, { egress: [rule('localhost', srv.port, GET), rule('127.0.0.1', srv.port, GET)], secrets: [] }, {}, { resolve: undefined });
  const lo = await rejection(t, h.call(`http://localhost:${srv.port}/`));
  t.equal(lo.details?.['egress'], 'private_address');
  t.match(lo.message, /localhost refused: it resolves to the loopback address/);
  t.equal(srv.connections, 0);
  const meta = await rejection(t, h.call('http://169.254.169.254/latest/meta-data/iam/'));
  t.equal(meta.details?.['egress'], 'host_not_granted');
  t.equal((await h.call(`http://127.0.0.1:${srv.port}/`)).status, 200, 'the exact literal grant is honoured');
  t.equal(srv.connections, 1);
});

t.test('the connection goes to the checked address with the host name kept in Host (no second DNS lookup)', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200, 'pinned'));
  // ".invalid" never resolves in real DNS: if anything but the pinned address were used, this would fail.
  const h = harness(env, { egress: [rule('pinned.invalid', srv.port, GET)], secrets: [] }, { 'pinned.invalid': ['127.0.0.1'] }, {
    allowPrivateAddress: (host, address) => host === 'pinned.invalid' && address === '127.0.0.1',
  });
  const res = await h.call(`http://pinned.invalid:${srv.port}/x`);
  t.equal(decode(res.body), 'pinned');
  t.equal(srv.requests[0]?.headers['host'], `pinned.invalid:${srv.port}`);
  t.same(h.resolved, ['pinned.invalid'], 'resolved exactly once, by the checker');
  t.equal(h.records[0]?.address, '127.0.0.1');
  const other = harness(env, { egress: [rule('other.invalid', srv.port, GET)], secrets: [] }, { 'other.invalid': ['127.0.0.1'] }, {
    allowPrivateAddress: (host) => host === 'pinned.invalid',
  });
  t.equal((await rejection(t, other.call(`http://other.invalid:${srv.port}/`))).details?.['egress'], 'private_address', 'the escape hatch is per host');
});

t.test('a redirect chain within the grants is followed and each hop is recorded', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, (req, res) => {
    if (req.url === '/r1') res.writeHead(302, { location: '/r2' }).end();
    else if (req.url === '/r2') res.writeHead(301, { location: `http://127.0.0.1:${srvPort()}/final?x=1` }).end();
    else res.writeHead(200).end(`final ${req.url}`);
  });
  const srvPort = () => srv.port;
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, GET)], secrets: [] });
  const res = await h.call(`${srv.origin}/r1`);
  t.equal(res.status, 200);
  t.equal(decode(res.body), 'final /final?x=1');
  t.same(
    h.records.map((r) => [r.hop, r.status, new URL(r.url).pathname]),
    [
      [0, 302, '/r1'],
      [1, 301, '/r2'],
      [2, 200, '/final'],
    ],
  );
});

t.test('a redirect to an ungranted host or to a private address is refused before connecting there', async (t) => {
  const env = openSecrets(t);
  const target = await startServer(t, answer(200, 'should not be reached'));
  const srv = await startServer(t, (req, res) => {
    if (req.url === '/to-other') res.writeHead(302, { location: `${target.origin}/` }).end();
    else if (req.url === '/to-meta') res.writeHead(307, { location: `http://meta.test:${target.port}/latest/meta-data/` }).end();
    else if (req.url === '/to-literal-meta') res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
    else if (req.url === '/to-file') res.writeHead(302, { location: 'file:///etc/passwd' }).end();
    else res.writeHead(404).end();
  });
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, GET), rule('meta.test', target.port, GET)], secrets: [] }, { 'meta.test': ['169.254.169.254'] });
  const cases: Array<[string, string]> = [
    ['/to-other', 'host_not_granted'],
    ['/to-meta', 'private_address'],
    ['/to-literal-meta', 'host_not_granted'],
    ['/to-file', 'scheme'],
  ];
  for (const [path, reason] of cases) {
    const e = await rejection(t, h.call(`${srv.origin}${path}`));
    t.equal(sandboxReason(e), 'capability_denied', path);
    t.equal(e.details?.['egress'], reason, path);
  }
  t.equal(target.connections, 0, 'the redirect target saw zero connections');
  t.match(h.records.filter((r) => r.denied), [
    { hop: 1, denied: 'host_not_granted' },
    { hop: 1, denied: 'private_address' },
    { hop: 1, denied: 'host_not_granted' },
    { hop: 1, denied: 'scheme' },
  ]);
});

t.test('redirect loops stop after maxRedirects, and 303 after a POST continues as a GET without the body', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, (req, res) => {
    if (req.url === '/loop') res.writeHead(302, { location: '/loop' }).end();
    else if (req.url === '/post') res.writeHead(303, { location: '/result' }).end();
    else res.writeHead(200).end(`${req.method} ${req.body.length}`);
  });
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, ['GET', 'POST'])], secrets: [] }, {}, { limits: { maxRedirects: 3 } });
  const e = await rejection(t, h.call(`${srv.origin}/loop`));
  t.equal(sandboxReason(e), 'host_error');
  t.match(e.message, /stopped after 3 redirects/);
  t.equal(e.details?.['retryable'], undefined, 'a redirect loop is not transient');
  t.equal(srv.requests.length, 4, 'the request plus three redirects');
  const res = await h.call(`${srv.origin}/post`, { method: 'POST', body: 'data' });
  t.equal(decode(res.body), 'GET 0');
  const postOnly = harness(env, { egress: [rule('127.0.0.1', srv.port, ['POST'])], secrets: [] });
  t.equal((await rejection(t, postOnly.call(`${srv.origin}/post`, { method: 'POST', body: 'data' }))).details?.['egress'], 'method_not_granted', 'the rewritten GET must be granted too');
});

t.test('a response over the remaining budget is budget_exceeded, also when it only grows by decompression', async (t) => {
  const env = openSecrets(t);
  const big = 'x'.repeat(200_000);
  const srv = await startServer(t, (req, res) => {
    if (req.url === '/big') res.writeHead(200).end(big);
    else if (req.url === '/bomb') res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync(Buffer.alloc(5_000_000)));
    else if (req.url === '/gz') res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync('compressed hello'));
    else if (req.url === '/zstd') res.writeHead(200, { 'content-encoding': 'zstd' }).end('????');
    else res.writeHead(200).end('small');
  });
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, GET)], secrets: [] });
  const e = await rejection(t, h.call(`${srv.origin}/big`, { maxResponseBytes: 50_000 }));
  t.equal(sandboxReason(e), 'budget_exceeded');
  t.equal(e.details?.['budget'], 'egress_bytes');
  const bomb = await rejection(t, h.call(`${srv.origin}/bomb`, { maxResponseBytes: 100_000 }));
  t.equal(sandboxReason(bomb), 'budget_exceeded');
  t.match(bomb.message, /decompresses to more than/);
  const gz = await h.call(`${srv.origin}/gz`);
  t.equal(decode(gz.body), 'compressed hello', 'a compressed body is decoded (so it can be redacted)');
  t.equal(gz.headers?.['content-encoding'], undefined);
  t.equal(srv.requests.find((r) => r.url === '/gz')?.headers['accept-encoding'], 'identity', 'egress asks for identity');
  t.equal(sandboxReason(await rejection(t, h.call(`${srv.origin}/zstd`))), 'host_error', 'an encoding egress cannot undo is refused');
  t.equal(decode((await h.call(`${srv.origin}/ok`, { maxResponseBytes: 5 })).body), 'small', 'exactly the budget is fine');
});

t.test('a request body over maxRequestBytes is refused before connecting', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200));
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, ['POST'])], secrets: [] }, {}, { limits: { maxRequestBytes: 1024 } });
  const e = await rejection(t, h.call(`${srv.origin}/`, { method: 'POST', body: new Uint8Array(1025) }));
  t.equal(sandboxReason(e), 'budget_exceeded');
  t.equal(e.details?.['budget'], 'egress_request_bytes');
  t.equal(srv.connections, 0);
});

t.test('the call signal aborts a pending request and a silent server hits the idle timeout', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, () => {
    /* never answers */
  });
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, GET)], secrets: [] }, {}, { limits: { idleTimeoutMs: 300 } });
  const ac = new AbortController();
  const started = Date.now();
  const p = h.call(`${srv.origin}/hang`, { signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  const e = await rejection(t, p);
  t.equal(sandboxReason(e), 'host_error');
  t.match(e.message, /aborted/);
  t.ok(Date.now() - started < 5000, 'aborted, not left hanging (a hang guard; the message says it was the abort)');
  const idle = await rejection(t, h.call(`${srv.origin}/hang`));
  t.match(idle.message, /no data for 300 ms/);
  const pre = new AbortController();
  pre.abort();
  const before = srv.connections;
  t.match((await rejection(t, h.call(`${srv.origin}/x`, { signal: pre.signal }))).message, /aborted/);
  t.equal(srv.connections, before, 'an already aborted call does not connect');
});

t.test('egress adds no credentials of its own and drops headers a plugin may not set (H3)', async (t) => {
  const env = openSecrets(t);
  env.secrets.set('SOME_TOKEN', Buffer.from('some-secret-value'), ['127.0.0.1']);
  const srv = await startServer(t, answer(200, 'ok'));
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, ['GET', 'POST'])], secrets: [{ name: 'SOME_TOKEN', destinations: ['127.0.0.1'] }] });
  await h.call(`${srv.origin}/`, { headers: { 'X-Custom': 'v', Host: 'evil.example', Connection: 'upgrade', 'Transfer-Encoding': 'chunked', 'Proxy-Authorization': 'x' } });
  await h.call(`${srv.origin}/`, { method: 'POST', body: 'abc' });
  const [get, post] = srv.requests;
  t.same(Object.keys(get!.headers).sort(), ['accept-encoding', 'connection', 'host', 'x-custom'], 'only what the plugin set plus framing');
  t.equal(get!.headers['host'], `127.0.0.1:${srv.port}`, 'a plugin cannot choose the Host header');
  t.equal(get!.headers['connection'], 'close');
  t.same(Object.keys(post!.headers).sort(), ['accept-encoding', 'connection', 'content-length', 'host']);
  for (const r of srv.requests) {
    t.equal(r.headers['authorization'], undefined, 'no Authorization unless the plugin templated one');
    t.equal(r.headers['cookie'], undefined);
    t.notOk(Object.keys(r.headers).some((k) => k.startsWith('x-tyrum')), 'no gateway headers');
  }
});

t.test('malformed headers are refused before connecting', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200));
  const h = harness(env, { egress: [rule('127.0.0.1', srv.port, GET)], secrets: [] }, {}, { limits: { maxRequestHeaders: 4 } });
  const bad: Array<Record<string, string>> = [{ 'bad name': 'x' }, { 'x-a': 'line\r\nInjected: 1' }, { 'x-a': 'nul\u0000' }, { 'x-a': 'snowman ☃' }, { a: '1', b: '2', c: '3', d: '4', e: '5' }];
  for (const headers of bad) {
    const e = await rejection(t, h.call(`${srv.origin}/`, { headers }));
    t.equal(e.details?.['egress'], 'invalid_header', JSON.stringify(headers));
  }
  t.equal(srv.connections, 0);
});

t.test('a plugin without rights gets nothing and a network failure is a host_error naming the host', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200));
  const none = harness(env, null);
  t.equal((await rejection(t, none.call(`${srv.origin}/`))).details?.['egress'], 'no_rights');
  const h = harness(env, { egress: [rule('nx.test', 80, GET), rule('127.0.0.1', 1, GET)], secrets: [] });
  const nx = await rejection(t, h.call('http://nx.test/'));
  t.equal(sandboxReason(nx), 'host_error');
  t.match(nx.message, /could not resolve nx\.test: ENOTFOUND/);
  t.equal(nx.details?.['retryable'], undefined, 'a name that does not exist is not transient: the engine does not retry it');
  const refused = await rejection(t, h.call('http://127.0.0.1:1/'));
  t.equal(sandboxReason(refused), 'host_error');
  t.match(refused.message, /egress to 127\.0\.0\.1:1 failed: ECONNREFUSED/);
  t.equal(refused.details?.['retryable'], true, 'a network failure is transient: an idempotent step is retried');
  t.match(h.records.at(-1), { status: null, error: /ECONNREFUSED/, address: '127.0.0.1' });
  t.equal(srv.connections, 0);
});

t.test('a resolver that hangs is cut off, and https to a server that does not speak TLS fails as a host_error', async (t) => {
  const env = openSecrets(t);
  const srv = await startServer(t, answer(200, 'plain http'));
  const h = harness(env, { egress: [rule('slow.test', 80, GET), rule('tls.invalid', srv.port, GET, 'https')], secrets: [] }, { 'tls.invalid': ['127.0.0.1'] }, {
    limits: { connectTimeoutMs: 100 },
    allowPrivateAddress: (host) => host === 'tls.invalid',
  });
  const slow = harness(env, { egress: [rule('slow.test', 80, GET)], secrets: [] }, {}, { limits: { connectTimeoutMs: 100 }, resolve: () => new Promise<string[]>(() => {}) });
  const e = await rejection(t, slow.call('http://slow.test/'));
  t.equal(sandboxReason(e), 'host_error');
  t.match(e.message, /could not resolve slow\.test: ETIMEOUT/);
  t.equal(e.details?.['retryable'], true, 'a resolver timeout is transient');
  const tls = await rejection(t, h.call(`https://tls.invalid:${srv.port}/`));
  t.equal(sandboxReason(tls), 'host_error');
  t.match(tls.message, new RegExp(`egress to tls\\.invalid:${srv.port} failed`));
  t.equal(tls.details?.['retryable'], undefined, 'a TLS failure is not transient');
  t.equal(srv.requests.length, 0, 'no HTTP request was completed over the failed handshake');
});
