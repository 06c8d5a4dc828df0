import t from 'tap';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { runCli } from '../../helpers/cli.js';
import { startTestGateway, removeHome, open, tokenSecret } from '../../helpers/gateway.js';

const run = runCli;

t.test('token commands', async (t) => {
  const home = join(t.testdir(), 'home');

  t.test('token create prints the token alone on stdout; it works at the gateway', async (t) => {
    const r = await run(['token', 'create', '--scopes', 'operator.read,operator.write', '--label', 'ci', '--ttl', '30d', '--home', home]);
    t.equal(r.code, 0, r.err);
    t.match(r.out, /^tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    t.equal(statSync(home).mode & 0o777, 0o700, 'home created 0700');
    t.equal(statSync(join(home, 'gateway.key')).mode & 0o777, 0o600, 'gateway key 0600');
    const json = await run(['token', 'create', '--scopes', 'operator.read', '--json', '--home', home]);
    const parsed = JSON.parse(json.out) as { token: string; info: { scopes: string[]; expires_at: null } };
    t.same(parsed.info.scopes, ['operator.read']);
    t.equal(parsed.info.expires_at, null);
  });

  t.test('token create refuses bad input with a clear message and exit 2', async (t) => {
    const missing = await run(['token', 'create', '--home', home]);
    t.equal(missing.code, 2);
    t.match(missing.err, /--scopes is required/);
    const badScope = await run(['token', 'create', '--scopes', 'operator.root', '--home', home]);
    t.equal(badScope.code, 2);
    t.match(badScope.err, /unknown scope "operator.root"/);
    const badTtl = await run(['token', 'create', '--scopes', 'operator.read', '--ttl', 'forever', '--home', home]);
    t.equal(badTtl.code, 2);
    t.match(badTtl.err, /invalid ttl/);
    const badFlag = await run(['token', 'create', '--scopes', 'operator.read', '--sudo', '--home', home]);
    t.equal(badFlag.code, 2);
    t.match(badFlag.err, /--sudo/);
  });

  t.test('token list shows metadata, never secrets; revoke marks it revoked', async (t) => {
    const created = await run(['token', 'create', '--scopes', 'operator.read', '--label', 'to-revoke', '--home', home]);
    const id = created.out.split('_')[1]!;
    const list = await run(['token', 'list', '--json', '--home', home]);
    const tokens = (JSON.parse(list.out) as { tokens: Array<{ token_id: string; label: string; revoked_at: string | null }> }).tokens;
    t.ok(tokens.find((x) => x.token_id === id && x.label === 'to-revoke'));
    t.notOk(list.out.includes(tokenSecret(created.out)), 'no secret in the listing');
    const rev = await run(['token', 'revoke', id, '--home', home]);
    t.equal(rev.code, 0);
    t.equal(rev.out, `revoked ${id}`);
    const text = await run(['token', 'list', '--home', home]);
    t.match(text.out, new RegExp(`${id}\\tto-revoke.*\\trevoked`));
    const again = await run(['token', 'revoke', id, '--home', home]);
    t.equal(again.code, 1);
    t.match(again.err, /already revoked/);
    const unknown = await run(['token', 'revoke', 'ffffffffffffffff', '--home', home]);
    t.equal(unknown.code, 1);
    t.match(unknown.err, /no token with id/);
  });

  t.test('unknown commands exit 2 with usage help', async (t) => {
    const r = await run(['frobnicate']);
    t.equal(r.code, 2);
    t.match(r.err, /unknown command "frobnicate"/);
    const h = await run(['help']);
    t.equal(h.code, 0);
    t.match(h.out, /token create --scopes/);
  });
});

t.test('audit verify passes on a healthy log and fails naming the first bad entry (G1)', async (t) => {
  const home = join(t.testdir(), 'home');
  for (let i = 0; i < 4; i++) await run(['token', 'create', '--scopes', 'operator.read', '--home', home]);
  const ok = await run(['audit', 'verify', '--home', home]);
  t.equal(ok.code, 0, ok.err);
  t.match(ok.out, /audit chain ok: 4 entries/);
  const list = await run(['audit', 'list', '--json', '--home', home]);
  t.equal(list.out.split('\n').length, 4);

  const db = new Database(join(home, 'tyrum.db'));
  db.prepare(`UPDATE audit_entries SET data = '{"token_id":"forged"}' WHERE seq = 3`).run();
  db.close();
  const bad = await run(['audit', 'verify', '--home', home]);
  t.equal(bad.code, 1);
  t.match(bad.err, /entry 3/);
  const json = await run(['audit', 'verify', '--json', '--home', home]);
  t.equal((JSON.parse(json.out) as { first_bad: { seq: number } }).first_bad.seq, 3);
  const doc = await run(['doctor', '--home', home]);
  t.equal(doc.code, 1, 'doctor fails on a broken audit chain');
  t.match(doc.out, /FAIL\s+audit chain/);
});

t.test('doctor and ping against a running gateway', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const doc = await run(['doctor', '--home', gw.home, '--json']);
  const report = JSON.parse(doc.out) as { ok: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };
  t.same(report.checks.filter((c) => c.name !== 'port' && !c.ok), [], 'every check but the port passes');
  const p = await run(['ping', '--home', gw.home, '--url', gw.url, '--json'], { TYRUM_TOKEN: gw.adminToken });
  t.equal(p.code, 0, p.err);
  const res = JSON.parse(p.out) as { device_id: string; rtt_ms: number };
  t.match(res.device_id, /^dev_[a-z2-7]{52}$/);
  t.equal(statSync(join(gw.home, 'client-device.key')).mode & 0o777, 0o600, 'client device key 0600');
  const bad = await run(['ping', '--home', gw.home, '--url', gw.url, '--token', 'tyrum_0000000000000000_' + 'A'.repeat(43)]);
  t.equal(bad.code, 1);
  t.match(bad.err, /401/);
  const spaced = await run(['ping', '--home', gw.home, '--url', gw.url, '--token', 'not a token']);
  t.equal(spaced.code, 2);
  t.match(spaced.err, /pass it exactly as printed/);
  const none = await run(['ping', '--home', gw.home, '--url', gw.url], { TYRUM_TOKEN: '' });
  t.equal(none.code, 2);
  t.match(none.err, /a token is required/);
  t.ok((await open(gw)) !== undefined);
});

t.test('the installed bin starts a gateway, prints the bootstrap token once and stops on SIGTERM', async (t) => {
  const home = join(t.testdir(), 'home');
  const bin = join(import.meta.dirname, '../../../bin/tyrum.js');
  const child = spawn(process.execPath, [bin, 'start', '--home', home, '--port', '0', '--log-level', 'silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 15_000;
  while (!/listening on ws:\/\/127\.0\.0\.1:\d+\/ws[^]*\n {2}tyrum ping /.test(err) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  t.match(err, /listening on ws:\/\/127\.0\.0\.1:(\d+)\/ws/);
  t.match(err, /shown only this once; store it now:\n {2}tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n/, 'the banner shows the bootstrap token');
  t.equal(out.trim(), '', 'stdout carries only log lines (none at level silent)');
  const port = Number(/127\.0\.0\.1:(\d+)\/ws/.exec(err)![1]);
  const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { status: string };
  t.equal(health.status, 'ok');
  const exit = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  child.kill('SIGTERM');
  t.equal(await exit, 0, 'clean exit');
  const ver = await run(['audit', 'verify', '--home', home]);
  t.equal(ver.code, 0, 'the audit chain verifies after a clean stop');
});
