// tyrum playbook: check offline, run → exit 3 at the gate with the token, resume, a second use refused.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli as run, cliGateway } from '../../helpers/cli.js';

const EXAMPLES = new URL('../../../examples/playbooks/', import.meta.url).pathname;
const PLUGINS = new URL('../../../plugins/', import.meta.url).pathname;

t.test('playbook check validates, prints the plan and a stable hash; bad files and inputs are coded errors', async (t) => {
  const ok = await run(['playbook', 'check', join(EXAMPLES, 'note-with-review.yaml'), '--input', 'title=T', '--input', 'text=a b']);
  t.equal(ok.code, 0, ok.err);
  t.match(ok.out, /playbook note-with-review 1\.0\.0: ok, 3 step\(s\)/);
  const hash = /plan hash ([0-9a-f]{64})/.exec(ok.out)?.[1];
  const again = await run(['playbook', 'check', join(EXAMPLES, 'note-with-review.yaml'), '--input', 'text=a b', '--input', 'title=T', '--json']);
  t.equal((JSON.parse(again.out) as { plan_hash: string }).plan_hash, hash, 'same file and inputs, same hash');
  const other = await run(['playbook', 'check', join(EXAMPLES, 'note-with-review.yaml'), '--input', 'title=T', '--input', 'text=a b c', '--json']);
  t.not((JSON.parse(other.out) as { plan_hash: string }).plan_hash, hash);
  const digest = await run(['playbook', 'check', join(EXAMPLES, 'github-issues-digest.yaml'), '--input', 'repo=nodejs/node', '--input', 'limit:=5', '--json']);
  t.equal(digest.code, 0, digest.err);
  t.same((JSON.parse(digest.out) as { inputs: unknown }).inputs, { repo: 'nodejs/node', limit: 5 }, 'k:=JSON gives a number');

  const missing = await run(['playbook', 'check', join(EXAMPLES, 'note-with-review.yaml')]);
  t.equal(missing.code, 1);
  t.match(missing.err, /TYRUM_ERR_PLAYBOOK_INVALID/);
  const dir = t.testdir({});
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'name: x\nversion: 1\nsteps:\n  - id: a\n    tool: t\n    tool: u\n');
  const dup = await run(['playbook', 'check', bad]);
  t.equal(dup.code, 1);
  t.match(dup.err, /not valid YAML or JSON.*line/s, 'a duplicate key is a parse error with its place');
  const badInput = await run(['playbook', 'check', join(EXAMPLES, 'note-with-review.yaml'), '--input', 'nonsense']);
  t.match(badInput.err, /--input takes NAME=TEXT or NAME:=JSON/);
});

t.test('playbook run exits 3 at the gate and prints the resume token; resume continues; a second resume is refused', async (t) => {
  const { H, env } = await cliGateway(t);
  t.equal((await run(['plugin', 'install', `${PLUGINS}text-utils/build`, ...H])).code, 0);
  t.equal((await run(['plugin', 'grant', 'text-utils', '--all-requested', ...H])).code, 0);
  t.equal((await run(['plugin', 'enable', 'text-utils', ...H])).code, 0);
  const dir = t.testdir({});
  const file = join(dir, 'p.yaml');
  writeFileSync(file, ['name: p', 'version: "1"', 'steps:', '  - id: count', '    tool: text-utils.word_count', '    args: { text: "${inputs.text}" }', '  - id: gate', '    approval: { message: "go on with ${steps.count.output.words} words?" }', '  - id: slug', '    tool: text-utils.transform', '    args: { text: "${inputs.text}", op: slug }', 'inputs: { type: object, properties: { text: { type: string } } }', ''].join('\n'));
  const started = await run(['playbook', 'run', file, '--input', 'text=Hello World'], env);
  t.equal(started.code, 3, started.err);
  t.match(started.out, /waits at gate "gate".*go on with 2 words\?/s);
  const token = /tyrum playbook resume (wrt\.\S+)/.exec(started.err)?.[1];
  t.ok(token, 'the token is printed with the command to use it');
  const resumed = await run(['playbook', 'resume', token!], env);
  t.equal(resumed.code, 0, resumed.err);
  t.match(resumed.out, /: succeeded/);
  t.match(resumed.out, /"text":"hello-world"/);
  const twice = await run(['playbook', 'resume', token!], env);
  t.equal(twice.code, 1);
  t.match(twice.err, /TYRUM_ERR_RESUME_TOKEN_USED|works once/);
  const list = await run(['playbook', 'list'], env);
  t.match(list.out, /wf_[0-9a-f]{16}\tp@1\tsucceeded/);
});
