/**
 * `tyrum doctor --home H` says "running" only for H's own gateway: another gateway answering on
 * H's configured port is named as such, not mistaken for H's.
 */
import t from 'tap';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { runCli } from '../../helpers/cli.js';
import { startTestGateway, removeHome, TEST_STORE } from '../../helpers/gateway.js';

type Report = { ok: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}

async function portCheck(home: string): Promise<{ ok: boolean; detail: string }> {
  const r = await runCli(['doctor', '--home', home, '--json']);
  const report = JSON.parse(r.out) as Report;
  const port = report.checks.find((c) => c.name === 'port');
  if (!port) throw new Error(`no port check in ${r.out}`);
  return port;
}

t.test("doctor does not take another home's gateway on its port for its own", async (t) => {
  const port = await freePort();
  // Home 1: a gateway running on `port`, configured there.
  const gw = await startTestGateway({ config: { port }, overrides: { port } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  // Home 2: a separate, initialised home whose config names the same port.
  const home2 = join(t.testdir(), 'home2');
  const init = await runCli(['token', 'create', '--scopes', 'operator.read', '--home', home2]);
  t.equal(init.code, 0, init.err);
  writeFileSync(join(home2, 'config.json'), JSON.stringify({ port }));

  // The database and audit checks run on the home's store (TYRUM_TEST_STORE picks it).
  const full = JSON.parse((await runCli(['doctor', '--home', gw.home, '--json'])).out) as Report;
  const db = full.checks.find((c) => c.name === 'database');
  t.equal(db?.ok, true, db?.detail ?? 'no database check');
  t.match(db?.detail, TEST_STORE === 'postgres' ? /^PostgreSQL: .*schema=v\d+/ : /journal_mode=wal/i);
  t.equal(full.checks.find((c) => c.name === 'audit chain')?.ok, true, 'the audit chain verifies');

  const own = await portCheck(gw.home);
  t.equal(own.ok, true, own.detail);
  t.match(own.detail, /running/, "home 1's doctor sees its own gateway running");

  const other = await portCheck(home2);
  t.equal(other.ok, false, 'the port check fails for home 2');
  t.notMatch(other.detail, /running on/, "home 2's doctor does not report home 1's gateway as running");
  t.match(other.detail, /another Tyrum gateway/, 'it says another gateway answers on that port');
});
