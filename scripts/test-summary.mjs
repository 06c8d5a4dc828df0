// The closing line of `npm test`, "tests: N passed, M failed, K skipped", counted from the raw TAP
// that tap keeps per test file in .tap/test-results (leaf assertions only: subtest summary lines
// carry "# time=" and are not counted), followed by the reason of every skipped test (tests that
// need an optional toolchain, such as clang for C plugins, skip with the reason when it is missing).
// CI reads the line; tap's own reporter prints no such line.
//
//   node scripts/test-summary.mjs [--dir DIR] [-- COMMAND [ARG...]]
//
// With a command (`npm test` runs `-- tap`), DIR is emptied, the command runs with this terminal,
// and the summary is printed whether it passed or failed. The exit code is non-zero when the command
// failed (its own code) or any test failed, so a failing run still fails, with its summary.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const args = process.argv.slice(2);
const sep = args.indexOf('--');
const own = sep === -1 ? args : args.slice(0, sep);
const command = sep === -1 ? [] : args.slice(sep + 1);
let root = '.tap/test-results';
for (let i = 0; i < own.length; i++) {
  if (own[i] === '--dir' && own[i + 1] !== undefined) root = own[++i];
  else {
    console.error(`test-summary: unknown argument "${own[i]}" (usage: node scripts/test-summary.mjs [--dir DIR] [-- COMMAND [ARG...]])`);
    process.exit(2);
  }
}

let commandCode = 0;
if (command.length > 0) {
  rmSync(root, { recursive: true, force: true });
  // Found on the PATH npm gives scripts (node_modules/.bin first).
  const r = spawnSync(command[0], command.slice(1), { stdio: 'inherit' });
  commandCode = r.status ?? 1;
  if (r.error) console.error(`test-summary: cannot run ${command.join(' ')}: ${r.error.message}`);
  else if (r.signal) console.error(`test-summary: ${command.join(' ')} was killed by ${r.signal}`);
}

let passed = 0;
let failed = 0;
let skipped = 0;
/** Skip reasons, each with the tests (file: name) that gave it. */
const reasons = new Map();
/** Test files whose output ends without a plan (1..N): they crashed, e.g. while importing. */
const unfinished = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.tap')) count(readFileSync(p, 'utf8'), relative(root, p).replace(/\.tap$/, ''));
  }
}
function count(text, file) {
  if (!/^1\.\.\d+/m.test(text)) {
    unfinished.push(file);
    failed++;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*(not )?ok \d+(?: - )?(.*)$/.exec(line);
    if (!m || /# time=/.test(m[2])) continue;
    const directive = /^(.*?)\s*#\s*(SKIP|TODO)\b:?\s*(.*)$/i.exec(m[2]);
    if (directive) {
      skipped++;
      const reason = directive[3] || (directive[2].toUpperCase() === 'TODO' ? 'todo' : 'no reason given');
      if (!reasons.has(reason)) reasons.set(reason, []);
      reasons.get(reason).push(`${file}: ${directive[1] || '(unnamed)'}`);
    } else if (m[1]) failed++;
    else passed++;
  }
}
if (existsSync(root)) walk(root);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
for (const [reason, tests] of reasons) {
  console.log(`skipped (${tests.length}): ${reason}`);
  for (const test of tests.slice(0, 5)) console.log(`  ${test}`);
  if (tests.length > 5) console.log(`  ... and ${tests.length - 5} more`);
}
if (unfinished.length > 0) console.log(`failed before finishing (${unfinished.length}, counted as failed): ${unfinished.join(', ')}`);
if (commandCode !== 0 && failed === 0) console.log(`the test runner exited with code ${commandCode} (see its output above)`);
process.exit(commandCode !== 0 ? commandCode : failed > 0 ? 1 : 0);
