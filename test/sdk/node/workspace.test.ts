// TESTPLAN J1: a path an agent names can never make the node read or change anything outside
// its workspace: not with `..`, an absolute path, a symlink anywhere in the path, a symlink or
// directory swapped in between the check and the use, a hard link to an outside file, or
// create_dirs through a symlink. After every case the sentinel files outside are unchanged
// (bytes, mtime, inode, link count) and nothing new appeared outside.
import { linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { FsCapabilities } from '../../../sdk/node/headless/fs.js';
import { NodeCapabilityError, Workspace, splitWorkspacePath, type WorkspaceHooks } from '../../../sdk/node/headless/workspace.js';
import { LINUX_ONLY, OLD, SECRET, layout, rejectsCode, snapshot } from './helpers.js';

/** A workspace and its fs capabilities; the outside snapshot is checked when the test ends. */
function setup(t: Test, hooks: WorkspaceHooks = {}) {
  const dirs = layout(t);
  const before = snapshot(dirs.outside);
  const baseNames = readdirSync(dirs.base).sort();
  const ws = new Workspace(dirs.ws, { hooks });
  const fs = new FsCapabilities(ws);
  t.teardown(() => ws.close());
  const unchanged = (what: string) => {
    t.same(snapshot(dirs.outside), before, `${what}: nothing outside the workspace changed or appeared`);
    t.same(readdirSync(dirs.base).sort(), baseNames, `${what}: nothing written beside the workspace`);
  };
  return { base: dirs.base, root: dirs.ws, outside: dirs.outside, workspace: ws, fs, unchanged };
}

t.test('paths are refused, never normalized: .., absolute, NUL, backslash, empty and . segments', { skip: LINUX_ONLY }, async (t) => {
  const { fs, outside, unchanged } = setup(t);
  for (const p of ['..', '../outside/secret.txt', 'sub/../../outside/secret.txt', 'sub/..', './a.txt/..']) {
    await rejectsCode(t, fs.read({ path: p }), 'forbidden', p.startsWith('./') ? 'invalid_path' : 'parent_segment', `read ${p}`);
  }
  await rejectsCode(t, fs.write({ path: '../outside/new.txt', content: 'x' }), 'forbidden', 'parent_segment', 'write ../outside/new.txt');
  await rejectsCode(t, fs.write({ path: '../outside/secret.txt', content: 'x' }), 'forbidden', 'parent_segment', 'write over an outside file');
  await rejectsCode(t, fs.list({ path: '..' }), 'forbidden', 'parent_segment', 'list ..');
  await rejectsCode(t, fs.search({ query: 'SECRET', path: '../outside' }), 'forbidden', 'parent_segment', 'search ../outside');
  await rejectsCode(t, fs.read({ path: join(outside, 'secret.txt') }), 'forbidden', 'absolute_path', 'read an absolute path');
  await rejectsCode(t, fs.write({ path: join(outside, 'secret.txt'), content: 'x' }), 'forbidden', 'absolute_path', 'write an absolute path');
  await rejectsCode(t, fs.list({ path: '/' }), 'forbidden', 'absolute_path', 'list /');
  await rejectsCode(t, fs.read({ path: 'a.txt\0' }), 'forbidden', 'invalid_path', 'NUL');
  await rejectsCode(t, fs.read({ path: '..\\outside\\secret.txt' }), 'forbidden', 'invalid_path', 'backslash');
  await rejectsCode(t, fs.read({ path: 'sub//b.txt' }), 'forbidden', 'invalid_path', 'empty segment');
  await rejectsCode(t, fs.read({ path: 'sub/' }), 'forbidden', 'invalid_path', 'trailing slash');
  await rejectsCode(t, fs.read({ path: '' }), 'invalid_request', undefined, 'empty path');
  await rejectsCode(t, fs.read({ path: 'a'.repeat(4097) }), 'invalid_request', undefined, 'longer than 4096');
  t.same(splitWorkspacePath('.'), [], '. is the root');
  t.same(splitWorkspacePath('sub/b.txt'), ['sub', 'b.txt']);
  unchanged('bad paths');
});

t.test('a symlinked directory anywhere in the path is refused for every operation', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs, outside, unchanged } = setup(t);
  symlinkSync(outside, join(root, 'link'));
  symlinkSync(join(outside, 'dir'), join(root, 'sub', 'deeplink'));
  await rejectsCode(t, fs.read({ path: 'link/secret.txt' }), 'forbidden', 'symlink', 'read through a symlinked dir');
  await rejectsCode(t, fs.read({ path: 'sub/deeplink/x.txt' }), 'forbidden', 'symlink', 'read through a nested symlinked dir');
  await rejectsCode(t, fs.write({ path: 'link/new.txt', content: 'x' }), 'forbidden', 'symlink', 'write through a symlinked dir');
  await rejectsCode(t, fs.write({ path: 'link/secret.txt', content: 'x' }), 'forbidden', 'symlink', 'overwrite through a symlinked dir');
  await rejectsCode(t, fs.list({ path: 'link' }), 'forbidden', 'symlink', 'list a symlinked dir');
  await rejectsCode(t, fs.search({ query: 'SECRET', path: 'link' }), 'forbidden', 'symlink', 'search a symlinked dir');
  const listed = await fs.list({});
  t.same(listed.output.entries.find((e) => e.name === 'link')?.type, 'symlink', 'list reports the symlink as a symlink');
  const found = await fs.search({ query: 'SECRET' });
  t.same(found.output.matches, [], 'search from the root does not follow symlinks out');
  unchanged('symlinked directories');
});

t.test('a symlinked final file is neither read nor written through; a write replaces the link itself', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs, outside, unchanged } = setup(t);
  symlinkSync(join(outside, 'secret.txt'), join(root, 's.txt'));
  symlinkSync('../outside/secret.txt', join(root, 'rel.txt'));
  await rejectsCode(t, fs.read({ path: 's.txt' }), 'forbidden', 'symlink', 'read an absolute symlink');
  await rejectsCode(t, fs.read({ path: 'rel.txt' }), 'forbidden', 'symlink', 'read a relative symlink');
  await rejectsCode(t, fs.write({ path: 's.txt', content: 'x', expected_sha256: 'f'.repeat(64) }), 'conflict', 'digest_mismatch', 'CAS cannot digest through a symlink');
  const w = await fs.write({ path: 's.txt', content: 'replaced\n' });
  t.same(w.evidence.before, { exists: true, type: 'symlink', sha256: null, size: null }, 'before-evidence: a symlink, not the target');
  t.notOk(lstatSync(join(root, 's.txt')).isSymbolicLink(), 'the name is now a regular file');
  t.equal(readFileSync(join(root, 's.txt'), 'utf8'), 'replaced\n');
  t.equal(readFileSync(join(outside, 'secret.txt'), 'utf8'), SECRET, 'the link target is untouched');
  unchanged('symlinked final files');
});

t.test('a symlink swapped in between the check and the open is caught by the descriptor checks', { skip: LINUX_ONLY }, async (t) => {
  let swap: ((path: string, op: string) => void) | null = null;
  const { root, fs, outside, unchanged } = setup(t, {
    beforeFinalOpen: ({ path, op }) => {
      const s = swap;
      swap = null;
      s?.(path, op);
    },
  });
  const ops: string[] = [];
  // A regular file that checks out, then becomes a symlink to the secret.
  swap = (path, op) => {
    ops.push(`${op}:${path}`);
    unlinkSync(join(root, 'a.txt'));
    symlinkSync(join(outside, 'secret.txt'), join(root, 'a.txt'));
  };
  await rejectsCode(t, fs.read({ path: 'a.txt' }), 'forbidden', 'symlink', 'file swapped for a symlink before the open');

  // The final directory of a list, swapped for a symlink to an outside directory.
  swap = (path, op) => {
    ops.push(`${op}:${path}`);
    rmSync(join(root, 'sub'), { recursive: true });
    symlinkSync(join(outside, 'dir'), join(root, 'sub'));
  };
  await rejectsCode(t, fs.list({ path: 'sub' }), 'forbidden', 'symlink', 'directory swapped for a symlink before the open');
  unlinkSync(join(root, 'sub'));
  mkdirSync(join(root, 'sub'));
  mkdirSync(join(root, 'sub', 'inner'));

  // The parent directory already walked is moved outside: the opened file resolves outside.
  swap = (path, op) => {
    ops.push(`${op}:${path}`);
    renameSync(join(root, 'sub'), join(outside, 'moved'));
  };
  writeFileSync(join(root, 'sub', 'inner', 'c.txt'), 'c\n');
  await rejectsCode(t, fs.read({ path: 'sub/inner/c.txt' }), 'forbidden', 'outside_workspace', 'parent moved outside between walk and open (read)');
  renameSync(join(outside, 'moved'), join(root, 'sub'));

  // Same for a write: nothing may be created in the directory once it is outside.
  swap = (path, op) => {
    ops.push(`${op}:${path}`);
    renameSync(join(root, 'sub'), join(outside, 'moved'));
  };
  const movedBefore = readdirSync(join(root, 'sub', 'inner')).sort();
  await rejectsCode(t, fs.write({ path: 'sub/inner/new.txt', content: 'x' }), 'forbidden', 'outside_workspace', 'parent moved outside between walk and write');
  t.same(readdirSync(join(outside, 'moved', 'inner')).sort(), movedBefore, 'no file (not even a temp file) was created in the moved directory');
  renameSync(join(outside, 'moved'), join(root, 'sub'));

  // A write whose name becomes a symlink after the before-check: rename replaces the link.
  swap = (path, op) => {
    ops.push(`${op}:${path}`);
    unlinkSync(join(root, 'a.txt'));
    symlinkSync(join(outside, 'secret.txt'), join(root, 'a.txt'));
  };
  unlinkSync(join(root, 'a.txt'));
  writeFileSync(join(root, 'a.txt'), 'plain\n');
  await fs.write({ path: 'a.txt', content: 'mine\n' });
  t.notOk(lstatSync(join(root, 'a.txt')).isSymbolicLink(), 'the swapped-in symlink was replaced, not followed');
  t.equal(readFileSync(join(root, 'a.txt'), 'utf8'), 'mine\n');
  // The test itself moved a directory into outside/ and back, which bumped outside/'s mtime;
  // put it back so the snapshot compares everything else (every entry and name is still checked).
  utimesSync(outside, OLD, OLD);
  t.same(ops, ['read:a.txt', 'dir:sub', 'read:sub/inner/c.txt', 'write:sub/inner/new.txt', 'write:a.txt'], 'the hook ran where the swap matters');
  unchanged('swaps between check and use');
});

t.test('a hard link to an outside file: reads and searches refuse it, a write replaces the name only', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs, outside } = setup(t);
  const secret = join(outside, 'secret.txt');
  const ino = lstatSync(secret).ino;
  linkSync(secret, join(root, 'hl.txt'));
  const before = snapshot(outside); // the link count of the secret is now 2
  await rejectsCode(t, fs.read({ path: 'hl.txt' }), 'forbidden', 'hard_link', 'read a hard-linked file');
  const found = await fs.search({ query: 'SECRET' });
  t.same(found.output.matches, [], 'search skips hard-linked files');
  await rejectsCode(t, fs.write({ path: 'hl.txt', content: 'x', expected_sha256: null }), 'conflict', 'exists', 'CAS null: the name exists');
  t.same(snapshot(outside), before, 'refusals changed nothing');
  const w = await fs.write({ path: 'hl.txt', content: 'new content\n' });
  t.same(w.evidence.before, { exists: true, type: 'hard_link', sha256: null, size: null }, 'before-evidence does not digest the outside inode');
  t.equal(w.output.created, false);
  const st = lstatSync(join(root, 'hl.txt'));
  t.not(st.ino, ino, 'the workspace name is a new inode');
  t.equal(st.nlink, 1);
  t.equal(readFileSync(join(root, 'hl.txt'), 'utf8'), 'new content\n');
  t.equal(readFileSync(secret, 'utf8'), SECRET, 'the outside file keeps its bytes');
  const after = snapshot(outside);
  t.equal((after['secret.txt'] as { ino: number }).ino, ino, 'same outside inode');
  t.equal((after['secret.txt'] as { nlink: number }).nlink, 1, 'its link count dropped back to 1');
  t.same({ ...after, 'secret.txt': undefined }, { ...before, 'secret.txt': undefined }, 'nothing else outside changed');
  const { nlink: _n, ...rest } = after['secret.txt'] as Record<string, unknown>;
  const { nlink: _m, ...restBefore } = before['secret.txt'] as Record<string, unknown>;
  t.same(rest, restBefore, 'the outside file: same bytes, mtime, mode, size');
});

t.test('create_dirs never creates through a symlink; it works for real directories', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs, outside, unchanged } = setup(t);
  symlinkSync(join(outside, 'dir'), join(root, 'ln'));
  await rejectsCode(t, fs.write({ path: 'ln/deep/new.txt', content: 'x', create_dirs: true }), 'forbidden', 'symlink', 'create_dirs through a symlink');
  await rejectsCode(t, fs.write({ path: 'sub/ln2/new.txt', content: 'x' }), 'not_found', undefined, 'no create_dirs: a missing dir is not_found');
  symlinkSync(join(outside, 'dir'), join(root, 'sub', 'ln2'));
  await rejectsCode(t, fs.write({ path: 'sub/ln2/more/new.txt', content: 'x', create_dirs: true }), 'forbidden', 'symlink', 'create_dirs through a nested symlink');
  await rejectsCode(t, fs.write({ path: 'a.txt/x/new.txt', content: 'x', create_dirs: true }), 'invalid_request', 'not_a_directory', 'a file in the path');
  unchanged('create_dirs through symlinks');
  const w = await fs.write({ path: 'n1/n2/f.txt', content: 'deep\n', create_dirs: true });
  t.equal(w.output.created, true);
  t.equal(readFileSync(join(root, 'n1', 'n2', 'f.txt'), 'utf8'), 'deep\n');
  t.ok(lstatSync(join(root, 'n1', 'n2')).isDirectory());
});

t.test('special files are refused without being opened for reading', { skip: LINUX_ONLY }, async (t) => {
  const { root, fs, unchanged } = setup(t);
  execFileSync('mkfifo', [join(root, 'fifo')]);
  await rejectsCode(t, fs.read({ path: 'fifo' }), 'forbidden', 'not_regular', 'a FIFO (would block a plain open)');
  await rejectsCode(t, fs.read({ path: 'sub' }), 'invalid_request', 'is_directory', 'a directory');
  await rejectsCode(t, fs.read({ path: 'nope.txt' }), 'not_found', undefined, 'missing');
  await rejectsCode(t, fs.write({ path: 'sub', content: 'x' }), 'invalid_request', 'is_directory', 'writing over a directory');
  await rejectsCode(t, fs.write({ path: '.tyrum-tmp-abc', content: 'x' }), 'forbidden', 'reserved_name', 'the temp-file prefix is reserved');
  const found = await fs.search({ query: 'x' });
  t.ok(found.output.files_scanned >= 2, 'search scans past the FIFO without hanging');
  unchanged('special files');
});

t.test('the workspace root is resolved once; / and a missing root are refused; a moved root confines nothing', { skip: LINUX_ONLY }, async (t) => {
  t.throws(() => new Workspace('/'), { code: 'forbidden' }, 'the root of the filesystem is not a workspace');
  t.throws(() => new Workspace(join(t.testdirName, 'missing')), { code: 'not_found' });
  const { base, ws: root } = layout(t);
  symlinkSync(root, join(base, 'alias'));
  const ws = new Workspace(join(base, 'alias'));
  t.teardown(() => ws.close());
  t.equal(ws.root, root, 'the root is its real path');
  const fs = new FsCapabilities(ws);
  t.equal((await fs.read({ path: 'a.txt' })).output.content, 'hello\nworld\n');
  renameSync(root, join(base, 'elsewhere'));
  await rejectsCode(t, fs.read({ path: 'a.txt' }), 'forbidden', 'outside_workspace', 'after the root moved, nothing resolves inside it');
});

t.test('construction on a platform without /proc confinement throws a coded error', async (t) => {
  const real = Object.getOwnPropertyDescriptor(process, 'platform')!;
  Object.defineProperty(process, 'platform', { value: 'darwin' });
  try {
    const err = t.throws(() => new Workspace(t.testdir())) as unknown;
    t.ok(err instanceof NodeCapabilityError);
    t.equal((err as NodeCapabilityError).code, 'internal');
    t.equal((err as NodeCapabilityError).details?.reason, 'platform_unsupported');
    t.match((err as Error).message, /Linux/);
  } finally {
    Object.defineProperty(process, 'platform', real);
  }
});
