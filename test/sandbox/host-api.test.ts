import t from 'tap';
import { SandboxPool, sandboxError, sandboxReason, type EgressRequest, type KvStore } from '../../sandbox/index.js';
import { loadFixture, NO_INPUT, str, text, u64 } from './helpers.js';

const pool = new SandboxPool({ workers: 2 });
t.teardown(() => pool.close());

/** An async in-memory store, like the real one behind the main thread's event loop. */
function memoryKv(quota = Infinity): KvStore & { data: Map<string, Uint8Array> } {
  const data = new Map<string, Uint8Array>();
  return {
    data,
    async get(key) {
      await Promise.resolve();
      return data.get(key) ?? null;
    },
    async set(key, value) {
      await Promise.resolve();
      if (value === null) data.delete(key);
      else if (value.byteLength > quota) return false;
      else data.set(key, value);
      return true;
    },
  };
}

t.test('kv_get and kv_set reach the main thread synchronously from inside a call', async (t) => {
  const kv = memoryKv();
  await loadFixture(pool, 'kv', 'kv', ['incr', 'incr_many'], { hostApi: { kv } });
  const values = [];
  for (let i = 0; i < 3; i++) {
    const r = await pool.call('kv', 'incr', NO_INPUT);
    values.push([u64(r.output, 0), u64(r.output, 8)]);
  }
  t.same(values, [[1, 0], [2, 0], [3, 0]], 'each call read the value the previous call stored');
  t.equal(u64(kv.data.get('counter') as Uint8Array), 3, 'the value lives in the main-thread store');

  const many = await pool.call('kv', 'incr_many', NO_INPUT);
  t.equal(u64(many.output), 1004);
  t.comment(`2,002 kv round trips through the bridge in one call: ${many.usage.wall_ms.toFixed(1)} ms (${((many.usage.wall_ms * 1000) / 2002).toFixed(1)} µs each)`);
});

t.test('a store that refuses a value (quota) is reported to the guest, not fatal', async (t) => {
  await loadFixture(pool, 'kv-full', 'kv', ['incr'], { hostApi: { kv: memoryKv(4) } });
  const r = await pool.call('kv-full', 'incr', NO_INPUT);
  t.same([u64(r.output, 0), u64(r.output, 8)], [1, 1], 'kv_set returned 1');
});

t.test('kv without a grant aborts the call naming the capability', async (t) => {
  await loadFixture(pool, 'kv-none', 'kv', ['incr']);
  const e = await pool.call('kv-none', 'incr', NO_INPUT).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'capability_denied');
  t.match((e as Error).message, 'plugin called kv_get but was not granted key-value storage');
});

t.test('a failing store is a host_error, and the plugin keeps working', async (t) => {
  let broken = true;
  const kv = memoryKv();
  const flaky: KvStore = {
    get: async (k) => {
      if (broken) throw new Error('disk on fire');
      return kv.get(k);
    },
    set: (k, v) => kv.set(k, v),
  };
  await loadFixture(pool, 'kv-flaky', 'kv', ['incr'], { hostApi: { kv: flaky } });
  const e = await pool.call('kv-flaky', 'incr', NO_INPUT).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'host_error');
  t.match((e as Error).message, 'disk on fire');
  broken = false;
  t.equal(u64((await pool.call('kv-flaky', 'incr', NO_INPUT)).output), 1);
});

t.test('http_request is served by the injected egress, never by the SDK', async (t) => {
  const seen: EgressRequest[] = [];
  const egress = async (req: EgressRequest) => {
    seen.push(req);
    const host = new URL(req.url).hostname;
    if (host !== 'api.example.test') throw sandboxError('capability_denied', `egress to ${host} is not granted`, { host });
    return { status: 201, headers: { 'content-type': 'text/plain' }, body: text('pong') };
  };
  await loadFixture(pool, 'http', 'http', ['fetch', 'fetch_status', 'post_input'], { hostApi: { egress } });

  const req = { url: 'https://api.example.test/ping', method: 'get', headers: { accept: 'text/plain' } };
  const r = await pool.call('http', 'fetch', text(JSON.stringify(req)));
  t.equal(str(r.output), 'pong');
  t.match(seen[0], { pluginKey: 'http', url: req.url, method: 'GET', headers: { accept: 'text/plain' }, body: null });
  t.equal(r.usage.egress_bytes, 4);

  t.equal(u64((await pool.call('http', 'fetch_status', text(JSON.stringify(req)))).output), 201);

  const post = await pool.call('http', 'post_input', text('hello'));
  t.equal(str(post.output), 'pong');
  t.match(seen[2], { url: 'https://api.example.test/upload', method: 'POST' });
  t.equal(str(seen[2]?.body as Uint8Array), 'hello');
  t.equal(post.usage.egress_bytes, 9, 'request body and response body count');
});

t.test('a refused destination aborts the call with the egress reason (D4 hook), and the next call works', async (t) => {
  const egress = async (req: EgressRequest) => {
    const host = new URL(req.url).hostname;
    if (host === '169.254.169.254') throw sandboxError('capability_denied', `egress to ${host} is not granted`, { host });
    return { status: 200, body: text('ok') };
  };
  await loadFixture(pool, 'http-deny', 'http', ['fetch'], { hostApi: { egress } });
  const meta = JSON.stringify({ url: 'http://169.254.169.254/latest/meta-data/' });
  const e = await pool.call('http-deny', 'fetch', text(meta)).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'capability_denied');
  t.match((e as Error).message, 'egress to 169.254.169.254 is not granted');
  t.match(e, { details: { host: '169.254.169.254', plugin: 'http-deny' } });
  t.equal(str((await pool.call('http-deny', 'fetch', text(JSON.stringify({ url: 'https://ok.test/' })))).output), 'ok');
});

t.test('an egress request still pending when the call times out is aborted', async (t) => {
  let signal: AbortSignal | undefined;
  const egress = (req: EgressRequest) =>
    new Promise<never>(() => {
      signal = req.signal;
    });
  await loadFixture(pool, 'http-slow', 'http', ['fetch'], { hostApi: { egress }, limits: { wallMs: 300 } });
  const e = await pool.call('http-slow', 'fetch', text('{"url":"https://slow.test/"}')).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'timeout');
  t.equal(signal?.aborted, true);
});

t.test('http without an egress grant, a bad descriptor or an exhausted egress budget each fail the call', async (t) => {
  await loadFixture(pool, 'http-none', 'http', ['fetch']);
  const none = await pool.call('http-none', 'fetch', text('{"url":"https://a.test/"}')).catch((e: unknown) => e);
  t.equal(sandboxReason(none), 'capability_denied');
  t.match((none as Error).message, 'not granted HTTP egress');

  let called = 0;
  const egress = async () => {
    called += 1;
    return { status: 200, body: text('0123456789') };
  };
  await loadFixture(pool, 'http-budget', 'http', ['fetch'], { hostApi: { egress } });
  const bad = await pool.call('http-budget', 'fetch', text('not json')).catch((e: unknown) => e);
  t.equal(sandboxReason(bad), 'trap');
  t.equal(called, 0, 'a malformed request never reaches egress');
  const over = await pool.call('http-budget', 'fetch', text('{"url":"https://a.test/"}'), { maxEgressBytes: 5 }).catch((e: unknown) => e);
  t.equal(sandboxReason(over), 'budget_exceeded');
  t.match(over, { details: { budget: 'egress_bytes' } });
});

t.test('http_request accepts the descriptors the Rust and Go PDKs send, unchanged', async (t) => {
  const seen: EgressRequest[] = [];
  const egress = async (req: EgressRequest) => {
    seen.push(req);
    return { status: 200, body: text(`${req.method} ${new URL(req.url).pathname}`) };
  };
  await loadFixture(pool, 'pdk-http', 'pdk-http', ['rust_new', 'rust_post', 'go_get', 'go_header'], { hostApi: { egress } });

  // Rust: {"url":…,"headers":{},"method":null} — a null method is GET, as in Extism's hosts.
  t.equal(str((await pool.call('pdk-http', 'rust_new', NO_INPUT)).output), 'GET /rust');
  t.match(seen[0], { url: 'https://api.example.test/rust', method: 'GET', headers: {}, body: null });

  t.equal(str((await pool.call('pdk-http', 'rust_post', text('hello'))).output), 'POST /rust');
  t.match(seen[1], { method: 'POST', headers: { 'content-type': 'text/plain' } });
  t.equal(str(seen[1]?.body as Uint8Array), 'hello');

  // Go: {"url":…,"method":"GET","headers":null} with an empty body block.
  t.equal(str((await pool.call('pdk-http', 'go_get', NO_INPUT)).output), 'GET /go');
  t.match(seen[2], { url: 'https://api.example.test/go', method: 'GET', headers: {}, body: null });

  // Older Go PDK: headers under "header".
  t.equal(str((await pool.call('pdk-http', 'go_header', NO_INPUT)).output), 'GET /go');
  t.match(seen[3], { headers: { accept: 'text/plain' }, body: null });
});

t.test('http_request refuses descriptors no Extism host accepts', async (t) => {
  let called = 0;
  const egress = async () => {
    called += 1;
    return { status: 200, body: text('ok') };
  };
  await loadFixture(pool, 'http-strict', 'http', ['fetch'], { hostApi: { egress } });
  for (const bad of [{ url: 'https://a.test/', method: '' }, { url: 'https://a.test/', method: 7 }, { url: 'https://a.test/', headers: { a: 1 } }, { url: 'https://a.test/', headers: [] }, { method: 'GET' }]) {
    const e = await pool.call('http-strict', 'fetch', text(JSON.stringify(bad))).catch((e: unknown) => e);
    t.equal(sandboxReason(e), 'trap', JSON.stringify(bad));
  }
  t.equal(called, 0);
});
