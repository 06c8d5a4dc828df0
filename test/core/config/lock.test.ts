// The gateway lock of a home (core/config/lock.ts over core/store/file-lock.ts): held by the
// operating system for the holder's process, so a killed holder leaves nothing to clean up, a
// holder's pid file is only a label, and starts racing for one home cannot both win.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { lockHome } from '../../../core/config/lock.js';

const LOCK_MODULE = fileURLToPath(new URL('../../../core/config/lock.ts', import.meta.url));

function home(t: Test): string {
  const h = join(t.testdir(), 'home');
  mkdirSync(h, { recursive: true, mode: 0o700 });
  return h;
}

/**
 * A child process that takes the lock, says so (or that it was refused), and holds it until
 * killed. With `go`, it first says "ready" and spins until that file exists, so several children
 * try at the same moment (a start is otherwise staggered by loading the code).
 */
function holder(homeDir: string, go?: string): { child: ReturnType<typeof spawn>; ready: Promise<void>; said: Promise<string> } {
  const wait = go ? `process.stdout.write('ready\\n'); while (!existsSync(${JSON.stringify(go)}));` : '';
  const code = `import { existsSync } from 'node:fs'; import { lockHome } from ${JSON.stringify(LOCK_MODULE)};
${wait}
try { lockHome(${JSON.stringify(homeDir)}); process.stdout.write('locked\\n'); setInterval(() => {}, 1000); }
catch (e) { process.stdout.write((e.code ?? 'error') + '\\n'); process.exit(0); }`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const lines = (n: number) =>
    new Promise<string>((resolve) => {
      const check = () => {
        const ls = out.split('\n').filter((l) => l !== '');
        if (ls.length >= n) resolve(ls[n - 1]!);
      };
      child.stdout!.on('data', check);
      child.on('exit', () => resolve(out.split('\n').filter((l) => l !== '')[n - 1] ?? ''));
      check();
    });
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  return { child, ready: go ? lines(1).then(() => undefined) : Promise.resolve(), said: lines(go ? 2 : 1) };
}

t.test('a second lock in the same process is refused; release frees it and removes the pid file', async (t) => {
  const h = home(t);
  const lock = lockHome(h);
  t.match(JSON.parse(readFileSync(join(h, 'gateway.lock'), 'utf8')), { pid: process.pid, started_at: /^\d{4}-/ });
  t.throws(() => lockHome(h), { code: 'TYRUM_ERR_HOME_LOCKED', message: new RegExp(`pid ${process.pid}`) });
  lock.release();
  t.notOk(existsSync(join(h, 'gateway.lock')), 'the pid file went with the lock');
  lockHome(h).release();
});

t.test('a holder killed with SIGKILL leaves a pid file but no lock: the next start takes it at once', async (t) => {
  const h = home(t);
  const first = holder(h);
  t.teardown(() => void first.child.kill('SIGKILL'));
  t.equal(await first.said, 'locked');
  t.throws(() => lockHome(h), { code: 'TYRUM_ERR_HOME_LOCKED', message: new RegExp(`pid ${first.child.pid}`) }, 'held while it lives');
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  t.match(JSON.parse(readFileSync(join(h, 'gateway.lock'), 'utf8')), { pid: first.child.pid }, 'its pid file is left behind');
  const lock = lockHome(h);
  t.match(JSON.parse(readFileSync(join(h, 'gateway.lock'), 'utf8')), { pid: process.pid }, 'taken over');
  lock.release();
});

t.test('the pid file is only a label: a live holder whose pid file was deleted or forged still holds the home', async (t) => {
  const h = home(t);
  const first = holder(h);
  t.teardown(() => void first.child.kill('SIGKILL'));
  t.equal(await first.said, 'locked');
  rmSync(join(h, 'gateway.lock'));
  t.throws(() => lockHome(h), { code: 'TYRUM_ERR_HOME_LOCKED', message: /another gateway is running on .* \(or starting\)/ });
  writeFileSync(join(h, 'gateway.lock'), JSON.stringify({ pid: 999_999_999, started_at: '2020-01-01T00:00:00.000Z' }));
  t.throws(() => lockHome(h), { code: 'TYRUM_ERR_HOME_LOCKED' }, 'a dead pid in the file does not make the lock stale');
});

t.test('starts racing for one home: exactly one takes it', async (t) => {
  for (let round = 0; round < 3; round++) {
    const h = join(home(t), `r${round}`);
    mkdirSync(h, { mode: 0o700 });
    // A stale pid file of a dead process, the case where the old takeover could let two win.
    writeFileSync(join(h, 'gateway.lock'), JSON.stringify({ pid: 999_999_999 }));
    const go = join(h, 'go');
    const racers = [holder(h, go), holder(h, go), holder(h, go)];
    t.teardown(() => racers.forEach((r) => r.child.kill('SIGKILL')));
    await Promise.all(racers.map((r) => r.ready));
    writeFileSync(go, '');
    const said = await Promise.all(racers.map((r) => r.said));
    t.equal(said.filter((s) => s === 'locked').length, 1, `round ${round}: one winner (${said.join(', ')})`);
    t.equal(said.filter((s) => s === 'TYRUM_ERR_HOME_LOCKED').length, 2, `round ${round}: the others are refused`);
    racers.forEach((r) => r.child.kill('SIGKILL'));
  }
});
