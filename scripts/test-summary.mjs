// Prints one closing line, "tests: N passed, M failed, K skipped", from the raw TAP that tap
// keeps per test file in .tap/test-results (leaf assertions only: subtest summary lines carry
// "# time=" and are not counted). CI reads this line; tap's own reporter prints no such line.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = '.tap/test-results';
let passed = 0;
let failed = 0;
let skipped = 0;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.tap')) count(readFileSync(p, 'utf8'));
  }
}
function count(text) {
  for (const line of text.split('\n')) {
    const m = /^\s*(not )?ok \d+(.*)$/.exec(line);
    if (!m || /# time=/.test(m[2])) continue;
    if (/#\s*(SKIP|TODO)/i.test(m[2])) skipped++;
    else if (m[1]) failed++;
    else passed++;
  }
}
walk(root);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
