import t from 'tap';
import { buildConfig, isLoopback, DEFAULT_LIMITS, ensureHome, storeOf } from '../../../core/config/index.js';
import { startGateway } from '../../../core/runtime.js';
import { statSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';

t.test('defaults: loopback, port 8788, documented limits, frozen', async (t) => {
  const c = buildConfig('/h', {});
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, 8788);
  t.equal(c.limits.maxFrameBytes, 1024 * 1024);
  t.equal(c.limits.handshakeTimeoutMs, 10_000);
  t.same(c.limits, DEFAULT_LIMITS);
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.limits));
});

t.test('config files are validated: unknown keys, wrong types and out-of-range values name the field (E5)', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{ prot: 1 }, /unknown key "prot"/],
    [{ port: 'eighty' }, /\/port/],
    [{ port: 70000 }, /\/port/],
    [{ limits: { max_frame_bytes: 10 } }, /\/limits\/max_frame_bytes/],
    [{ limits: { max_frame: 10 } }, /unknown key "max_frame"/],
    [{ allowed_origins: ['javascript:alert(1)'] }, /\/allowed_origins\/0/],
    [[], /\//],
  ];
  for (const [raw, re] of bad) t.throws(() => buildConfig('/h', raw, {}, 'config.json'), { code: 'TYRUM_ERR_INVALID_CONFIG', message: re }, JSON.stringify(raw));
  const c = buildConfig('/h', { limits: { max_frame_bytes: 65536 } });
  t.equal(c.limits.maxFrameBytes, 65536);
  t.equal(c.limits.maxQueuedBytes, DEFAULT_LIMITS.maxQueuedBytes, 'unset limits keep defaults');
});

t.test('a public bind without TLS or a trusted proxy is refused (F8)', async (t) => {
  for (const host of ['0.0.0.0', '::', '192.0.2.10', 'example.org']) {
    t.throws(() => buildConfig('/h', { host }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /without TLS/ }, host);
  }
  t.ok(buildConfig('/h', { host: '0.0.0.0', trusted_proxies: ['127.0.0.1'] }));
  t.ok(buildConfig('/h', { host: '0.0.0.0', tls: { cert_file: 'c.pem', key_file: 'k.pem' } }));
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) t.ok(isLoopback(host), host);
  t.notOk(isLoopback('128.0.0.1'));
  // The CLI override path is checked too, and nothing is started.
  const home = t.testdir();
  await t.rejects(startGateway({ home, overrides: { host: '0.0.0.0', port: 0 }, logLevel: false }), /refusing to listen on non-loopback address 0\.0\.0\.0/);
});

t.test('the home is created 0700 and a too-open home is tightened', async (t) => {
  const dir = t.testdir();
  const home = join(dir, 'new');
  ensureHome(home);
  t.equal(statSync(home).mode & 0o777, 0o700);
  const open = join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o755);
  ensureHome(open);
  t.equal(statSync(open).mode & 0o777, 0o700);
  writeFileSync(join(dir, 'file'), 'x');
  t.throws(() => ensureHome(join(dir, 'file')), /not a directory/);
});

t.test('telemetry: off by default; an OTLP endpoint, service name and sample ratio are validated', async (t) => {
  const off = buildConfig('/h', {});
  t.same(off.telemetry, { otlpEndpoint: null, serviceName: 'tyrum-gateway', sampleRatio: 1 }, 'tracing off unless an endpoint is named');
  t.ok(Object.isFrozen(off.telemetry));
  const on = buildConfig('/h', { telemetry: { otlp_endpoint: 'http://127.0.0.1:4318/v1/traces', service_name: 'gw-a', sample_ratio: 0.25 } });
  t.same(on.telemetry, { otlpEndpoint: 'http://127.0.0.1:4318/v1/traces', serviceName: 'gw-a', sampleRatio: 0.25 });
  const bad: Array<[unknown, RegExp]> = [
    [{ telemetry: { otlp_endpoint: 'ftp://collector/v1/traces' } }, /\/telemetry\/otlp_endpoint/],
    [{ telemetry: { otlp_endpoint: 'https://user:secret@collector/v1/traces' } }, /\/telemetry\/otlp_endpoint: not an http\(s\) URL without credentials/],
    [{ telemetry: { otlp_endpoint: 'http://' } }, /\/telemetry\/otlp_endpoint/],
    [{ telemetry: { sample_ratio: 1.5 } }, /\/telemetry\/sample_ratio/],
    [{ telemetry: { service_name: '' } }, /\/telemetry\/service_name/],
    [{ telemetry: { exporter: 'zipkin' } }, /unknown key "exporter"/],
  ];
  for (const [raw, re] of bad) t.throws(() => buildConfig('/h', raw, {}, 'config.json'), { code: 'TYRUM_ERR_INVALID_CONFIG', message: re }, JSON.stringify(raw));
  t.notMatch((() => {
    try {
      buildConfig('/h', { telemetry: { otlp_endpoint: 'https://user:secret@collector/v1/traces' } });
      return '';
    } catch (e) {
      return (e as Error).message;
    }
  })(), /secret/, 'the refusal never echoes the credentials');
});

t.test('store: SQLite by default; PostgreSQL accepted (no experimental switch); its URL never echoed', async (t) => {
  t.same(buildConfig('/h', {}).store, { kind: 'sqlite' });
  t.same(buildConfig('/h', { store: { kind: 'sqlite' } }).store, { kind: 'sqlite' });
  t.throws(() => buildConfig('/h', { store: { kind: 'sqlite', url: 'postgres://x@h/db' } }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /\/store\/url: only for kind "postgres"/ });
  t.throws(() => buildConfig('/h', { store: { kind: 'mysql' } }), { code: 'TYRUM_ERR_INVALID_CONFIG' });
  const secretUrl = 'postgres://tyrum:hunter2-secret@db.example:5433/tyrum';
  // Accepted with nothing else set: the former TYRUM_EXPERIMENTAL_POSTGRES gate is gone, and the
  // variable, set or not, changes nothing.
  const saved = process.env.TYRUM_EXPERIMENTAL_POSTGRES;
  delete process.env.TYRUM_EXPERIMENTAL_POSTGRES;
  t.teardown(() => {
    if (saved !== undefined) process.env.TYRUM_EXPERIMENTAL_POSTGRES = saved;
  });
  const accepted = buildConfig('/h', { store: { kind: 'postgres', url: secretUrl, pool: { statement_timeout_ms: 2000 } } }).store;
  t.equal(accepted.kind, 'postgres');
  if (accepted.kind !== 'postgres') return;
  t.equal(accepted.url(), secretUrl);
  t.equal(accepted.statementTimeoutMs, 2000);
  t.notMatch(JSON.stringify(buildConfig('/h', { store: { kind: 'postgres', url: secretUrl } })), /hunter2/, 'the URL is not part of what a config serializes to');
  t.equal(storeOf({ kind: 'postgres', url: secretUrl }, 'config', { TYRUM_EXPERIMENTAL_POSTGRES: '0' } as NodeJS.ProcessEnv).kind, 'postgres', 'the old switch is ignored');
  const env = { PG_URL: secretUrl } as NodeJS.ProcessEnv;
  const fromEnv = storeOf({ kind: 'postgres', url_env: 'PG_URL', pool: { statement_timeout_ms: 5000 } }, 'config', env);
  t.equal(fromEnv.kind, 'postgres');
  if (fromEnv.kind !== 'postgres') return;
  t.equal(fromEnv.url(), secretUrl);
  t.equal(fromEnv.where, 'db.example:5433/tyrum');
  t.equal(fromEnv.statementTimeoutMs, 5000);
  t.equal(fromEnv.connectTimeoutMs, 10_000);
  t.notMatch(JSON.stringify(fromEnv), /hunter2/, 'the URL is not part of what serializes');
  t.same(storeOf({ kind: 'postgres', url: secretUrl }, 'config', env).kind, 'postgres');
  for (const [raw, why] of [
    [{ kind: 'postgres' }, /exactly one of url and url_env/],
    [{ kind: 'postgres', url: secretUrl, url_env: 'PG_URL' }, /exactly one of url and url_env/],
    [{ kind: 'postgres', url_env: 'NOT_SET_ANYWHERE' }, /NOT_SET_ANYWHERE is not set/],
    [{ kind: 'postgres', url: 'mysql://tyrum:hunter2-secret@h/db' }, /not a postgres:\/\/ URL/],
    [{ kind: 'postgres', url: 'hunter2-secret not a url' }, /not a URL/],
  ] as const) {
    const e = t.throws(() => storeOf(raw, 'config', env), { code: 'TYRUM_ERR_INVALID_CONFIG', message: why }) as unknown;
    t.notMatch(String((e as Error | undefined)?.message), /hunter2/, 'the URL is never in the message');
  }
});
