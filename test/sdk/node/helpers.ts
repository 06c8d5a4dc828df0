// Shared fixtures of the headless node tests: a workspace beside an "outside" directory of
// sentinel files, and a snapshot of everything outside the workspace (names, bytes, mtimes,
// inodes) to prove a case neither changed nor added anything there.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { NodeCapabilityError } from '../../../sdk/node/headless/workspace.js';

export const LINUX_ONLY = process.platform === 'linux' ? false : 'workspace confinement needs Linux /proc/self/fd; the node refuses fs and shell capabilities elsewhere';

export const SECRET = 'TOP-SECRET-SENTINEL\n';
export const OLD = new Date('2001-02-03T04:05:06Z');

/** base/ws (the workspace) and base/outside (sentinels, mtimes set far in the past). */
export function layout(t: Test): { base: string; ws: string; outside: string } {
  const base = t.testdir({
    ws: { 'a.txt': 'hello\nworld\n', sub: { 'b.txt': 'bee\n' } },
    outside: { 'secret.txt': SECRET, dir: { 'x.txt': SECRET } },
  });
  const outside = join(base, 'outside');
  for (const p of ['secret.txt', 'dir/x.txt', 'dir', '.']) utimesSync(join(outside, p), OLD, OLD);
  return { base, ws: join(base, 'ws'), outside };
}

/** Every entry under `dir` (and `dir` itself), with what would change if anything touched it. */
export function snapshot(dir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const visit = (p: string, rel: string) => {
    const st = lstatSync(p);
    const entry: Record<string, unknown> = { ino: st.ino, nlink: st.nlink, mtimeMs: st.mtimeMs, mode: st.mode, size: st.size };
    if (st.isFile()) entry.sha256 = createHash('sha256').update(readFileSync(p)).digest('hex');
    if (st.isSymbolicLink()) entry.target = readlinkSync(p);
    out[rel] = entry;
    if (st.isDirectory()) for (const name of readdirSync(p).sort()) visit(join(p, name), rel === '.' ? name : `${rel}/${name}`);
  };
  visit(dir, '.');
  return out;
}

/** Assert `fn` rejects with a NodeCapabilityError of `code` (and `reason`, when given). */
export async function rejectsCode(t: Test, p: Promise<unknown>, code: string, reason?: string, msg?: string): Promise<NodeCapabilityError | undefined> {
  try {
    await p;
  } catch (e) {
    t.ok(e instanceof NodeCapabilityError, `${msg ?? code}: a NodeCapabilityError`);
    const err = e as NodeCapabilityError;
    t.equal(err.code, code, `${msg ?? code}: code ${code} (${err.message})`);
    if (reason !== undefined) t.equal(err.details?.reason, reason, `${msg ?? code}: reason ${reason}`);
    return err;
  }
  t.fail(`${msg ?? code}: expected a rejection`);
  return undefined;
}
