// scripts/test-summary.mjs, the closing line of `npm test`: it runs the test runner, then prints
// "tests: N passed, M failed, K skipped" and every skip reason whether the runner passed or failed,
// and exits non-zero when it failed. A stand-in runner writes raw TAP the way tap does.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'scripts', 'test-summary.mjs');

const PASSING = 'TAP version 14\nok 1 - adds\nok 2 - C plugins # SKIP needs the C toolchain: clang is not installed (apt-get install clang lld)\n1..2\n';
const FAILING = 'TAP version 14\n# Subtest: group\n    ok 1 - inner\n    not ok 2 - breaks\n    1..2\nnot ok 1 - group # time=12.3ms\nok 2 - later\n1..2\n';

/** A stand-in for tap: writes `files` (name -> TAP text) under `dir` and exits with `code`. */
function runner(t: Test, dir: string, files: Record<string, string>, code: number): string {
  const file = join(t.testdirName, 'runner.mjs');
  writeFileSync(
    file,
    `import { mkdirSync, writeFileSync } from 'node:fs';\nimport { dirname, join } from 'node:path';\n` +
      `for (const [name, text] of Object.entries(${JSON.stringify(files)})) { const p = join(${JSON.stringify(dir)}, name); mkdirSync(dirname(p), { recursive: true }); writeFileSync(p, text); }\n` +
      `console.log('runner output');\nprocess.exit(${code});\n`,
  );
  return file;
}

function summary(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

t.test('a failing run still prints the summary and the skip reasons, and exits non-zero', async (t) => {
  const dir = join(t.testdir({ results: { 'stale.test.ts.tap': 'ok 1 - from an earlier run\n' } }), 'results');
  const r = summary(['--dir', dir, '--', process.execPath, runner(t, dir, { 'test/a.test.ts.tap': PASSING, 'test/b.test.ts.tap': FAILING }, 1)]);
  t.equal(r.code, 1);
  t.match(r.out, /^runner output$/m, 'the runner ran with this terminal');
  t.match(r.out, /^tests: 3 passed, 1 failed, 1 skipped$/m, 'the old results were cleared; subtest summary lines are not counted');
  t.match(r.out, /^skipped \(1\): needs the C toolchain: clang is not installed \(apt-get install clang lld\)\n {2}test\/a\.test\.ts: C plugins$/m);
});

t.test('a passing run with skips exits 0; a runner that fails without a failed test keeps its exit code', async (t) => {
  const dir = join(t.testdir(), 'results');
  const ok = summary(['--dir', dir, '--', process.execPath, runner(t, dir, { 'a.test.ts.tap': PASSING }, 0)]);
  t.equal(ok.code, 0);
  t.match(ok.out, /^tests: 1 passed, 0 failed, 1 skipped$/m);
  const crashed = summary(['--dir', dir, '--', process.execPath, runner(t, dir, { 'a.test.ts.tap': PASSING }, 3)]);
  t.equal(crashed.code, 3);
  t.match(crashed.out, /^tests: 1 passed, 0 failed, 1 skipped$/m);
  t.match(crashed.out, /the test runner exited with code 3/);
  const summaryOnly = summary(['--dir', dir]);
  t.equal(summaryOnly.code, 0, 'without a command: the results already there');
  t.match(summaryOnly.out, /^tests: 1 passed, 0 failed, 1 skipped$/m);
  t.match(summary(['--bogus']), { code: 2, out: /unknown argument "--bogus"/ });
});

t.test('npm test runs tap through the summary, so the line prints when tap fails', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.match(pkg.scripts.test, /&& node scripts\/test-summary\.mjs -- tap$/);
  t.notMatch(pkg.scripts.test, /tap &&/, 'nothing after tap is skipped when it fails');
});

t.test('a test file that crashed before finishing (no plan in its TAP) is counted as failed and named', async (t) => {
  const dir = join(t.testdir(), 'results');
  // What tap leaves for a file that threw while importing: no plan, no assertions.
  const r = summary(['--dir', dir, '--', process.execPath, runner(t, dir, { 'test/a.test.ts.tap': PASSING, 'test/crash.test.ts.tap': '' }, 1)]);
  t.equal(r.code, 1);
  t.match(r.out, /^tests: 1 passed, 1 failed, 1 skipped$/m, 'not "0 failed"');
  t.match(r.out, /^failed before finishing \(1, counted as failed\): test\/crash\.test\.ts$/m);
});
