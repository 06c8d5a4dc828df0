import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openHomeCore } from '../../../core/home.js';
import { runCli } from '../../helpers/cli.js';
import { counts, runIds, seedEvents, seedRun } from './fixtures.js';

const DAY = 86_400_000;

/** A home with runs and events aged against the real clock (the CLI sweeps at Date.now()). */
function seededHome(t: Test): string {
  const dir = t.testdir();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ retention: { runs_days: 30, events_days: 7, batch_size: 2 } }));
  const core = openHomeCore(dir);
  try {
    // fixtures age rows against their fixed NOW; shift it to today by choosing ages from Date.now().
    const age = (days: number) => (Date.parse('2026-06-01T00:00:00Z') - (Date.now() - days * DAY)) / DAY;
    for (let i = 0; i < 5; i++) seedRun(core.store, { id: `old-${i}`, state: 'succeeded', createdDaysAgo: age(40) });
    seedRun(core.store, { id: 'old-paused', state: 'paused', createdDaysAgo: age(40) });
    seedRun(core.store, { id: 'young', state: 'failed', createdDaysAgo: age(2) });
    seedEvents(core.store, [age(20), age(10), age(1), age(0)]);
    for (let i = 0; i < 4; i++) core.audit.appendSync('test.seeded', { kind: 'cli' }, { i });
  } finally {
    void core.close();
  }
  return dir;
}

t.test('tyrum gc --dry-run shows what would go and changes nothing; tyrum gc removes exactly that; audit verify passes', async (t) => {
  const dir = seededHome(t);
  const H = ['--home', dir];
  const before = counts(dir);
  const dry = await runCli(['gc', '--dry-run', ...H]);
  t.equal(dry.code, 0, dry.err);
  t.match(dry.out, /^would remove \(dry run: nothing changed\):/);
  t.match(dry.out, /runs\s+15 rows .*older than 30 d .*: runs 5, steps 5, attempts 5/);
  t.match(dry.out, /events\s+2 rows/);
  t.match(dry.out, /conversations\s+kept \(no retention set\)/);
  t.match(dry.out, /total: 17 rows/);
  t.same(counts(dir), before, 'a dry run changes nothing');

  const dryJson = JSON.parse((await runCli(['gc', '--dry-run', '--json', ...H])).out) as { dry_run: boolean; rows: number; bytes: number; categories: Array<{ name: string; rows: number; bytes: number }> };
  t.equal(dryJson.dry_run, true);
  const real = await runCli(['gc', '--json', ...H]);
  t.equal(real.code, 0, real.err);
  const r = JSON.parse(real.out) as typeof dryJson;
  t.equal(r.dry_run, false);
  t.same(r.categories.map((c) => [c.name, c.rows, c.bytes]), dryJson.categories.map((c) => [c.name, c.rows, c.bytes]), 'the dry run predicted the real sweep');
  t.same(runIds(dir), ['old-paused', 'young']);
  t.equal(counts(dir).outbox, 2);

  const again = await runCli(['gc', ...H]);
  t.match(again.out, /^removed:/);
  t.match(again.out, /total: 0 rows, 0 B/);
  const verify = await runCli(['audit', 'verify', ...H]);
  t.equal(verify.code, 0, verify.err);
  const swept = (await runCli(['audit', 'list', '--type', 'retention.swept', '--json', ...H])).out.split('\n').filter((l) => l !== '');
  t.equal(swept.length, 1, 'one entry for the sweep that removed something, none for the dry runs or the empty sweep');
  t.match(JSON.parse(swept[0]!), { actor: { kind: 'cli' }, data: { rows: 17, categories: { runs: { rows: 15 }, events: { rows: 2 } } } });

  t.equal((await runCli(['gc', '--bogus', ...H])).code, 2, 'a usage error exits 2');
});

t.test('tyrum gc refuses a config whose events outlive runs', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ retention: { runs_days: 3, events_days: 7 } }));
  const r = await runCli(['gc', '--json', '--home', dir]);
  t.equal(r.code, 1);
  t.match(JSON.parse(r.err), { error: { code: 'TYRUM_ERR_INVALID_CONFIG', message: /events_days/ } });
});

t.test('audit archive: round trip after a sweep, and every kind of tampering with the file is reported', async (t) => {
  const dir = seededHome(t);
  const H = ['--home', dir];
  t.equal((await runCli(['gc', ...H])).code, 0);
  // t.testdir() wipes the directory when called again: the archives go in the same one.
  const out = join(dir, 'audit.jsonl');
  const made = await runCli(['audit', 'archive', '--out', out, '--json', ...H]);
  t.equal(made.code, 0, made.err);
  const w = JSON.parse(made.out) as { entries: number; key_id: string; verified: boolean; sha256: string };
  t.equal(w.verified, true);
  const doctorKey = /id ([0-9a-f]{16})/.exec((await runCli(['doctor', ...H])).out)?.[1];
  t.equal(w.key_id, doctorKey, 'signed by the key doctor names');
  const lines = readFileSync(out, 'utf8').split('\n').filter((l) => l !== '');
  t.ok(lines.length >= 5, `enough entries to tamper with (${lines.length} lines)`);
  t.equal(lines.length, w.entries + 1, 'a header and every entry');
  t.match(JSON.parse(lines[lines.length - 1]!), { type: 'audit.archived', data: { file: 'audit.jsonl' } }, 'the archive ends with its own entry');
  t.equal((await runCli(['audit', 'archive', '--out', out, ...H])).code, 2, 'an existing file is never overwritten');

  const ok = await runCli(['audit', 'verify', '--archive', out, '--key-id', w.key_id]);
  t.equal(ok.code, 0, ok.err);
  t.match(ok.out, new RegExp(`audit archive ok: ${w.entries} entries, signed by key ${w.key_id}`));
  const okJson = JSON.parse((await runCli(['audit', 'verify', '--archive', out, '--json'])).out) as { ok: boolean; entries: number };
  t.match(okJson, { ok: true, entries: w.entries });

  const variant = async (name: string, edit: (ls: string[]) => string[], expect: RegExp, keyId?: string) => {
    const f = join(dir, `${name}.jsonl`);
    writeFileSync(f, edit([...lines]).join('\n') + '\n');
    const r = await runCli(['audit', 'verify', '--archive', f, ...(keyId ? ['--key-id', keyId] : [])]);
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(r.err, expect, name);
  };
  const editEntry = (ls: string[], i: number, fn: (e: Record<string, unknown>) => void) => {
    const e = JSON.parse(ls[i]!) as Record<string, unknown>;
    fn(e);
    ls[i] = JSON.stringify(e);
    return ls;
  };
  await variant('edited', (ls) => editEntry(ls, 2, (e) => ((e.data as Record<string, unknown>).injected = true)), /audit archive BROKEN: entry 2: hash mismatch \(entry edited\)/);
  await variant('deleted', (ls) => ls.filter((_, i) => i !== 3), /entry 3: missing \(entry deleted/);
  await variant('truncated', (ls) => ls.slice(0, ls.length - 2), /log truncated: the signed checkpoint records/);
  await variant('appended', (ls) => [...ls, ls[ls.length - 1]!.replace('"seq":', '"seq":1000')], /not covered by the signed checkpoint|entry \d+: /);
  await variant('garbage line', (ls) => [...ls.slice(0, 2), 'not json', ...ls.slice(3)], /entry 2: unreadable \(not JSON\)/);
  await variant('checkpoint edited', (ls) => editEntry(ls, 0, (h) => ((h.checkpoint as Record<string, unknown>).seq = 1)), /checkpoint signature is invalid/);
  await variant('key swapped', (ls) => editEntry(ls, 0, (h) => (h.key_id = '0000000000000000')), /key_id 0000000000000000 is not the id of its public key/);
  await variant('wrong key pinned', (ls) => ls, /signed by key [0-9a-f]{16}, not by the expected key ffffffffffffffff/, 'ffffffffffffffff');
  await variant('not an archive', () => ['{"hello":1}'], /not a tyrum\.audit-archive version 1 header/);
  t.equal((await runCli(['audit', 'verify', '--archive', join(dir, 'nope.jsonl')])).code, 1, 'a missing file');
  t.equal((await runCli(['audit', 'verify', '--key-id', 'x', ...H])).code, 2, '--key-id without --archive is a usage error');
});
