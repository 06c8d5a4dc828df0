// `tyrum start` as a real process (from source): a port in use fails fast with a coded message
// naming the port and --port, mints no token, and leaves no process behind; the bootstrap token is
// minted once the gateway listens (so the first successful start prints it); one gateway per home
// (a second start on the same home is refused naming the first one's pid; the lock goes away on
// stop, and a stale lock of a dead process is taken over).
import { createServer, type Server } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runCli, spawnCli } from '../../helpers/cli.js';

const BANNER = /listening on ws:\/\/127\.0\.0\.1:(\d+)\/ws/;
const TOKEN = /shown only this once; store it now:\n {2}(tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43})\n/;

async function occupiedPort(t: Test): Promise<number> {
  const srv: Server = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return (srv.address() as { port: number }).port;
}

t.test('a port in use: a coded error naming the port and --port, exit 1, no token minted, nothing left running', async (t) => {
  const home = join(t.testdir(), 'home');
  const port = await occupiedPort(t);
  const p = spawnCli(['start', '--home', home, '--port', String(port), '--log-level', 'silent']);
  t.teardown(() => void p.child.kill('SIGKILL'));
  t.equal(await p.exit(30_000), 1, 'the process ends by itself (no hang)');
  t.match(p.err(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use \\(another gateway or program\\); choose another with --port N`));
  t.match(p.err(), /TYRUM_ERR_PORT_IN_USE/);
  t.notMatch(p.err(), /unexpected error|\n\s+at /, 'no stack trace');
  t.notMatch(p.err(), /tyrum_[0-9a-f]{16}_/, 'no token');
  const tokens = JSON.parse((await runCli(['token', 'list', '--json', '--home', home])).out) as { tokens: unknown[] };
  t.same(tokens.tokens, [], 'no admin token was minted for a start that failed');
  t.notOk(existsSync(join(home, 'gateway.lock')), 'the lock was released');

  // The next start that works is the first start: it mints and prints the admin token.
  const ok = spawnCli(['start', '--home', home, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => void ok.child.kill('SIGKILL'));
  await ok.waitErr(BANNER);
  t.match(ok.err(), TOKEN);
  ok.child.kill('SIGTERM');
  t.equal(await ok.exit(), 0);
});

t.test('one gateway per home: a second start is refused naming the first pid; the lock goes on stop; a stale lock is taken over', async (t) => {
  const home = join(t.testdir(), 'home');
  const lockFile = join(home, 'gateway.lock');
  const first = spawnCli(['start', '--home', home, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => void first.child.kill('SIGKILL'));
  await first.waitErr(BANNER);
  t.match(JSON.parse(readFileSync(lockFile, 'utf8')), { pid: first.child.pid, started_at: /^\d{4}-/ });

  const second = spawnCli(['start', '--home', home, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => void second.child.kill('SIGKILL'));
  t.equal(await second.exit(30_000), 1);
  t.match(second.err(), new RegExp(`another gateway \\(pid ${first.child.pid}, started [^)]+\\) is running on ${home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; stop it first, or start this one with another --home`));
  t.match(second.err(), /TYRUM_ERR_HOME_LOCKED/);
  t.match(JSON.parse(readFileSync(lockFile, 'utf8')), { pid: first.child.pid }, 'the refused start left the lock alone');

  first.child.kill('SIGTERM');
  t.equal(await first.exit(), 0);
  t.notOk(existsSync(lockFile), 'released on stop');

  // A lock left by a process that is gone (crash, SIGKILL) is stale.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(lockFile, JSON.stringify({ pid: Number(dead.stdout), started_at: '2020-01-01T00:00:00.000Z' }));
  const third = spawnCli(['start', '--home', home, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => void third.child.kill('SIGKILL'));
  await third.waitErr(BANNER);
  t.match(JSON.parse(readFileSync(lockFile, 'utf8')), { pid: third.child.pid }, 'taken over');
  third.child.kill('SIGTERM');
  t.equal(await third.exit(), 0);
});
