// TESTPLAN J2: shell.exec runs only allowed commands, passes argv literally (no shell), in a
// workspace directory, with a scrubbed environment, and leaves no process of the command's
// group behind, at a timeout or after a normal exit. Output is capped with digests of the full
// streams. Bounds on time are generous on purpose: nothing here asserts a tight duration.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, realpathSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { sysNoop } from '../../../sdk/node/headless/index.js';
import { DEFAULT_SHELL_OUTPUT_BYTES, ShellExec, resolveCommand, type ShellOptions } from '../../../sdk/node/headless/shell.js';
import { Workspace } from '../../../sdk/node/headless/workspace.js';
import { LINUX_ONLY, layout, rejectsCode, snapshot } from './helpers.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function setup(t: Test, options: Partial<ShellOptions> = {}) {
  const { ws: root, outside } = layout(t);
  const ws = new Workspace(root);
  t.teardown(() => ws.close());
  const shell = new ShellExec(ws, { allow: ['printf', 'sh', 'env', 'pwd', 'seq', 'cat'], ...options });
  return { root, outside, ws, shell };
}

/** Poll until no process is left in the group (kill(-pgid, 0) → ESRCH); the bound is generous. */
async function groupGone(pgid: number, boundMs = 20_000): Promise<string> {
  const until = Date.now() + boundMs;
  for (;;) {
    try {
      process.kill(-pgid, 0);
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? String(e);
    }
    if (Date.now() > until) return 'still alive';
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `exec`, recording the pid of the started process; kills its group at teardown whatever happens. */
function tracked(t: Test) {
  const pids: number[] = [];
  t.teardown(() => {
    for (const p of pids) {
      try {
        process.kill(-p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  return { pids, onEvidence: (e: { kind: 'started'; pid: number }) => pids.push(e.pid) };
}

t.test('allowed commands resolve once to absolute real paths; an unresolvable name refuses construction', { skip: LINUX_ONLY }, async (t) => {
  const { ws, shell } = setup(t);
  t.equal(shell.commands.get('sh'), realpathSync('/bin/sh'), 'sh is its real path');
  for (const abs of shell.commands.values()) t.match(abs, /^\//);
  t.throws(() => new ShellExec(ws, { allow: ['no-such-command-tyrum'] }), { code: 'invalid_request' }, 'an unknown name');
  t.throws(() => new ShellExec(ws, { allow: ['./printf'] }), { code: 'invalid_request' }, 'a relative path');
  t.throws(() => new ShellExec(ws, { allow: [] }), { code: 'invalid_request' }, 'an empty allowlist');
  t.throws(() => resolveCommand('/nonexistent/bin/x'), { code: 'invalid_request' });
  t.equal(resolveCommand('/bin/sh'), realpathSync('/bin/sh'), 'an absolute path is allowed as given, resolved');
});

t.test('a command that is not allowed is forbidden, by name or by path', { skip: LINUX_ONLY }, async (t) => {
  const { root, shell } = setup(t, { allow: ['printf'] });
  writeFileSync(join(root, 'x'), 'keep');
  for (const argv of [['rm', '-rf', 'x'], ['/usr/bin/rm', '-rf', 'x'], ['sh', '-c', 'rm -rf x'], ['./printf'], ['/tmp/printf'], ['printf ']]) {
    await rejectsCode(t, shell.exec({ argv }), 'forbidden', 'not_allowed', JSON.stringify(argv));
  }
  t.ok(existsSync(join(root, 'x')), 'nothing ran');
  const byPath = await shell.exec({ argv: [shell.commands.get('printf')!, 'ok'] });
  t.equal(byPath.output.stdout, 'ok', 'the resolved absolute path is allowed too');
  await rejectsCode(t, shell.exec({ argv: [] }), 'invalid_request', undefined, 'empty argv');
  await rejectsCode(t, shell.exec({ argv: ['printf'], shell: true }), 'invalid_request', undefined, 'unknown argument');
  await rejectsCode(t, shell.exec({ argv: ['printf'], timeout_ms: 300_001 }), 'invalid_request', undefined, 'timeout over 300 s');
});

t.test('argv is passed literally: ; rm -rf, $(...) and backticks are plain text', { skip: LINUX_ONLY }, async (t) => {
  const { root, outside, shell } = setup(t);
  writeFileSync(join(root, 'x'), 'keep');
  const before = snapshot(outside);
  const args = ['; rm -rf x', '$(touch pwned)', '`touch pwned2`', '&& rm x || true', '| cat /etc/passwd', "'quoted' \"double\"", '*', '~', '$HOME'];
  const r = await shell.exec({ argv: ['printf', '%s\\n', ...args] });
  t.equal(r.output.stdout, args.map((a) => a + '\n').join(''), 'every argument printed back unchanged');
  t.equal(r.output.exit_code, 0);
  t.equal(r.output.signal, null);
  t.ok(existsSync(join(root, 'x')), 'x was not removed');
  t.same(readdirSync(root).sort(), ['a.txt', 'sub', 'x'], 'no pwned files');
  t.same(snapshot(outside), before, 'nothing outside changed');
  t.match(r.evidence, { argv0_resolved: realpathSync('/usr/bin/printf'), exit_code: 0, signal: null, timed_out: false, duration_ms: Number, pgid_killed: false, stdout: { bytes: Buffer.byteLength(r.output.stdout), sha256: sha(r.output.stdout), truncated: false } });
});

t.test('the environment is scrubbed: PATH, HOME (the workspace) and LANG only, nothing inherited', { skip: LINUX_ONLY }, async (t) => {
  const { root, shell } = setup(t);
  process.env.TYRUM_TEST_SECRET = 'must-not-leak';
  process.env.TYRUM_TOKEN = 'must-not-leak-either';
  t.teardown(() => {
    delete process.env.TYRUM_TEST_SECRET;
    delete process.env.TYRUM_TOKEN;
  });
  const r = await shell.exec({ argv: ['env', '-0'] });
  // tap's @tapjs/processinfo wraps child_process.spawn in the test process and adds its own
  // variables (NODE_OPTIONS and _TAPJS_PROCESSINFO_*, some multi-line) to every child; outside
  // tests they do not exist. env -0 separates the variables with NUL.
  const harness = (l: string) => l.startsWith('_TAPJS_PROCESSINFO_') || (l.startsWith('NODE_OPTIONS=') && l.includes('@tapjs/processinfo'));
  const lines = r.output.stdout.split('\0').filter((l) => l !== '' && !harness(l)).sort();
  t.same(lines, ['HOME=' + root, 'LANG=C.UTF-8', 'PATH=/usr/local/bin:/usr/bin:/bin']);
  t.notMatch(r.output.stdout, /^TYRUM_/m, 'no TYRUM_* variable');
  t.notMatch(r.output.stdout, /must-not-leak/);
});

t.test('cwd is a workspace directory, resolved like any workspace path', { skip: LINUX_ONLY }, async (t) => {
  const { root, outside, shell } = setup(t);
  t.equal((await shell.exec({ argv: ['pwd'] })).output.stdout, root + '\n', 'the root by default');
  t.equal((await shell.exec({ argv: ['pwd'], cwd: 'sub' })).output.stdout, join(root, 'sub') + '\n');
  symlinkSync(outside, join(root, 'out'));
  await rejectsCode(t, shell.exec({ argv: ['pwd'], cwd: '..' }), 'forbidden', 'parent_segment', 'cwd ..');
  await rejectsCode(t, shell.exec({ argv: ['pwd'], cwd: outside }), 'forbidden', 'absolute_path', 'cwd absolute');
  await rejectsCode(t, shell.exec({ argv: ['pwd'], cwd: 'out' }), 'forbidden', 'symlink', 'cwd through a symlink to outside');
  await rejectsCode(t, shell.exec({ argv: ['pwd'], cwd: 'a.txt' }), 'invalid_request', undefined, 'cwd a file');
  await rejectsCode(t, shell.exec({ argv: ['pwd'], cwd: 'missing' }), 'not_found', undefined, 'cwd missing');
});

t.test('at the timeout the whole process group is dead, background children included', { skip: LINUX_ONLY }, async (t) => {
  const { shell } = setup(t);
  const tr = tracked(t);
  const r = await shell.exec({ argv: ['sh', '-c', 'sleep 100 & sleep 100'], timeout_ms: 1000 }, { onEvidence: tr.onEvidence });
  t.equal(r.output.timed_out, true);
  t.equal(r.output.exit_code, null);
  t.equal(r.output.signal, 'SIGTERM');
  t.equal(r.evidence.pgid_killed, true);
  t.equal(tr.pids.length, 1, 'started evidence carried the pid');
  t.equal(await groupGone(tr.pids[0]!), 'ESRCH', 'kill(-pgid, 0) finds nobody');
});

t.test('a group that ignores SIGTERM is killed with SIGKILL after the grace period', { skip: LINUX_ONLY }, async (t) => {
  const { shell } = setup(t, { killGraceMs: 300 });
  const tr = tracked(t);
  const r = await shell.exec({ argv: ['sh', '-c', 'trap "" TERM; sleep 100 & sleep 100'], timeout_ms: 500 }, { onEvidence: tr.onEvidence });
  t.equal(r.output.timed_out, true);
  t.equal(r.output.signal, 'SIGKILL');
  t.equal(await groupGone(tr.pids[0]!), 'ESRCH');
});

t.test('a background child that outlives its leader is killed when the leader exits', { skip: LINUX_ONLY }, async (t) => {
  const { shell } = setup(t);
  const tr = tracked(t);
  const r = await shell.exec({ argv: ['sh', '-c', 'sleep 100 & echo $!'], timeout_ms: 60_000 }, { onEvidence: tr.onEvidence });
  t.equal(r.output.timed_out, false, 'answered long before the timeout');
  t.equal(r.output.exit_code, 0);
  t.equal(r.evidence.pgid_killed, true, 'the group still had a member to kill');
  const bg = Number(r.output.stdout.trim());
  t.ok(bg > 0, 'the background pid');
  t.equal(await groupGone(tr.pids[0]!), 'ESRCH', 'the group is empty');
  let code = '';
  try {
    process.kill(bg, 0);
  } catch (e) {
    code = (e as NodeJS.ErrnoException).code ?? '';
  }
  t.equal(code, 'ESRCH', 'the background sleep is gone');
});

t.test('the dispatch deadline bounds the command: min(timeout_ms, dispatch - 500 ms)', { skip: LINUX_ONLY }, async (t) => {
  const { shell } = setup(t);
  const tr = tracked(t);
  await rejectsCode(t, shell.exec({ argv: ['printf', 'x'] }, { timeout_ms: 500 }), 'timeout', 'deadline', 'no time left');
  const r = await shell.exec({ argv: ['sh', '-c', 'sleep 100'], timeout_ms: 300_000 }, { timeout_ms: 1500, onEvidence: tr.onEvidence });
  t.equal(r.output.timed_out, true, 'the dispatch deadline won over timeout_ms');
  t.ok(r.output.duration_ms < 60_000, 'nowhere near timeout_ms');
  t.equal(await groupGone(tr.pids[0]!), 'ESRCH');
});

t.test('output is capped per stream; the digests and byte counts cover the full streams', { skip: LINUX_ONLY }, async (t) => {
  const { shell } = setup(t);
  const full = Array.from({ length: 50_000 }, (_, i) => String(i + 1)).join('\n') + '\n';
  const r = await shell.exec({ argv: ['seq', '1', '50000'] });
  t.equal(r.output.stdout, full.slice(0, DEFAULT_SHELL_OUTPUT_BYTES), 'the first 64 KiB');
  t.equal(r.output.stdout_truncated, true);
  t.equal(r.output.stderr_truncated, false);
  t.same(r.evidence.stdout, { bytes: full.length, sha256: sha(full), truncated: true });
  const small = setup(t, { maxOutputBytes: 10 }).shell;
  const e = await small.exec({ argv: ['sh', '-c', 'echo out; echo 0123456789abcdef >&2; exit 3'] });
  t.equal(e.output.exit_code, 3);
  t.equal(e.output.stdout, 'out\n');
  t.equal(e.output.stdout_truncated, false);
  t.equal(e.output.stderr, '0123456789', 'stderr capped by the option');
  t.same(e.evidence.stderr, { bytes: 17, sha256: sha('0123456789abcdef\n'), truncated: true });
});

t.test('stdin is handed to the command; a command that ignores it still finishes', { skip: LINUX_ONLY }, async (t) => {
  const { shell } = setup(t);
  t.equal((await shell.exec({ argv: ['cat'], stdin: 'hello\n' })).output.stdout, 'hello\n');
  t.equal((await shell.exec({ argv: ['printf', 'no-read'], stdin: 'x'.repeat(65_536) })).output.stdout, 'no-read');
  t.equal((await shell.exec({ argv: ['cat'] })).output.stdout, '', 'no stdin: an empty one, not a hang');
});

t.test('sys.noop answers ok and takes no arguments', async (t) => {
  t.same(await sysNoop({}), { output: { ok: true }, evidence: {} });
  await rejectsCode(t, sysNoop({ x: 1 }), 'invalid_request');
});

t.test('shell.exec waits for the workspace like the fs capabilities do; a vanished command is an internal error', { skip: LINUX_ONLY }, async (t) => {
  const { outside, ws, shell } = setup(t);
  const order: string[] = [];
  let release!: () => void;
  const held = ws.exclusive(async () => {
    await new Promise<void>((r) => (release = r));
    order.push('held');
  });
  const run = shell.exec({ argv: ['printf', 'x'] }).then(() => order.push('exec'));
  await new Promise((r) => setTimeout(r, 50));
  t.same(order, [], 'the command did not start while the workspace was held');
  release();
  await Promise.all([held, run]);
  t.same(order, ['held', 'exec']);
  const tool = join(outside, 'tool.sh');
  writeFileSync(tool, '#!/bin/sh\necho tool\n', { mode: 0o755 });
  const own = new ShellExec(ws, { allow: [tool] });
  t.equal((await own.exec({ argv: [tool] })).output.stdout, 'tool\n', 'an absolute allowed path runs');
  unlinkSync(tool);
  await rejectsCode(t, own.exec({ argv: [tool] }), 'internal', 'spawn_failed', 'the resolved file is gone');
});
