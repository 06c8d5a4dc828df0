// CLI conventions (git, gh and docker are the anchors), in-process on temp homes: `tyrum help X` is
// `tyrum X --help`; a typo in a command or subcommand gets "did you mean"; a missing positional is
// named; Node's parseArgs wording never leaks ("unknown option '--x' for 'tyrum plugin list'");
// the error code ends the message's first line, never glued to usage text; under --json an error
// is one JSON object on stderr; JSON times are ISO-8601 (secret list); `run get` is for people
// unless --json; the hint after installing a plugin is complete and correct (http-api: running it
// as printed, with HOST filled in, makes the plugin enableable).
import t from 'tap';
import { join } from 'node:path';
import { runCli as run, cliGateway } from '../../helpers/cli.js';
import { openHome } from '../../../core/runtime.js';
import { BUILT } from '../registry/helpers.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

t.test('tyrum help X is tyrum X --help', async (t) => {
  for (const topic of [['plugin'], ['plugin', 'grant'], ['mcp'], ['run'], ['token'], ['audit'], ['policy'], ['approvals'], ['secret'], ['tool'], ['start'], ['doctor']]) {
    const viaHelp = await run(['help', ...topic]);
    const viaFlag = await run([...topic, '--help']);
    t.equal(viaHelp.code, 0, `help ${topic.join(' ')}: ${viaHelp.err}`);
    t.equal(viaFlag.code, 0, `${topic.join(' ')} --help: ${viaFlag.err}`);
    t.equal(viaHelp.out, viaFlag.out, `tyrum help ${topic.join(' ')}`);
    t.match(viaHelp.out, new RegExp(`tyrum ${topic[0]}`));
  }
  t.not((await run(['help', 'plugin'])).out, (await run(['help'])).out, 'the topic is not ignored');
  const typo = await run(['help', 'plgin']);
  t.equal(typo.code, 2);
  t.match(typo.err, /unknown command "plgin"; did you mean "plugin"\?/);
});

t.test('a typo in a command or subcommand: did you mean', async (t) => {
  const cmd = await run(['plgin', 'list']);
  t.equal(cmd.code, 2);
  t.match(cmd.err, /^tyrum: unknown command "plgin"; did you mean "plugin"\? \(see: tyrum help\) \[TYRUM_ERR_INVALID_ARGUMENT\]$/);
  t.match((await run(['tokn'])).err, /did you mean "token"\?/);
  const sub = await run(['plugin', 'lsit']);
  t.equal(sub.code, 2);
  t.match(sub.err, /^tyrum: unknown plugin command "lsit"; did you mean "list"\? \(tyrum plugin has: install, list, .*\) \[TYRUM_ERR_INVALID_ARGUMENT\]$/);
  t.match((await run(['mcp', 'aprove', 'x'])).err, /unknown mcp command "aprove"; did you mean "approve"\?/);
  t.match((await run(['approvals', 'aprove', 'x'])).err, /did you mean "approve"\?/);
  t.match((await run(['run', 'gte', 'x'])).err, /unknown run command "gte"; did you mean "get"\?/);
  const far = await run(['plugin', 'frobnicate']);
  t.equal(far.code, 2);
  t.notMatch(far.err, /did you mean/, 'no suggestion when nothing is close');
  t.match((await run(['zzzzzz'])).err, /^tyrum: unknown command "zzzzzz" \(see: tyrum help\)/);
});

t.test('a command with subcommands needs one: the same error for every command, before it runs', async (t) => {
  for (const cmd of ['plugin', 'mcp', 'token', 'audit', 'policy', 'approvals', 'run', 'secret', 'tool']) {
    const bare = await run([cmd]);
    t.equal(bare.code, 2, cmd);
    t.match(bare.err, new RegExp(`^tyrum: missing command: tyrum ${cmd} COMMAND \\(tyrum ${cmd} has: [a-z, -]+; see: tyrum help ${cmd}\\) \\[TYRUM_ERR_INVALID_ARGUMENT\\]$`), cmd);
    const flag = await run([cmd, '--json']);
    t.equal(flag.code, 2, `${cmd} --json`);
    t.match(JSON.parse(flag.err), { error: { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /^missing command before '--json'/ } }, `${cmd} --json`);
    const help = await run([cmd, '--help']);
    t.equal(help.code, 0, `${cmd} --help`);
    for (const word of ['help', '-h']) t.same(await run([cmd, word]), help, `tyrum ${cmd} ${word} is tyrum ${cmd} --help`);
  }
});

t.test('a missing positional is named, with the usage', async (t) => {
  const home = join(t.testdir(), 'home');
  const cases: Array<[string[], RegExp]> = [
    [['plugin', 'enable'], /^tyrum: missing ID: usage: tyrum plugin enable ID \[TYRUM_ERR_INVALID_ARGUMENT\]$/],
    [['plugin', 'info'], /missing ID: usage: tyrum plugin info ID/],
    [['plugin', 'install'], /missing PATH: usage: tyrum plugin install PATH/],
    [['plugin', 'config'], /missing ID: usage: tyrum plugin config ID/],
    [['token', 'revoke'], /missing ID: usage: tyrum token revoke ID/],
    [['mcp', 'tools'], /missing NAME: usage: tyrum mcp tools NAME/],
    [['mcp', 'remove'], /missing NAME: usage: tyrum mcp remove NAME/],
    [['secret', 'rm'], /missing NAME: usage: tyrum secret rm NAME/],
    [['policy', 'explain'], /missing TOOL_ID: usage: tyrum policy explain TOOL_ID/],
    [['approvals', 'deny'], /missing ID: usage: tyrum approvals deny ID/],
    [['run', 'get'], /missing RUN_ID: usage: tyrum run get RUN_ID/],
    [['run', 'resolve', 'run_1', '0'], /missing retry\|skip\|fail: usage: tyrum run resolve RUN_ID STEP retry\|skip\|fail/],
    [['tool', 'call'], /missing TOOL_ID: usage: tyrum tool call TOOL_ID/],
  ];
  for (const [argv, message] of cases) {
    const r = await run([...argv, '--home', home], { TYRUM_TOKEN: '' });
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.err, message, argv.join(' '));
  }
});

t.test("unknown options and missing values are said in Tyrum's words, naming the command", async (t) => {
  const home = join(t.testdir(), 'home');
  const x = await run(['plugin', 'list', '--x', '--home', home]);
  t.equal(x.code, 2);
  t.equal(x.err, "tyrum: unknown option '--x' for 'tyrum plugin list' (see: tyrum plugin list --help) [TYRUM_ERR_INVALID_ARGUMENT]");
  t.notMatch(x.err, /To specify a positional argument|Unknown option/, "no parseArgs text");
  t.match((await run(['plugin', 'list', '--jsn', '--home', home])).err, /unknown option '--jsn' for 'tyrum plugin list'; did you mean '--json'\?/);
  t.match((await run(['start', '--prot', '1'])).err, /unknown option '--prot' for 'tyrum start'; did you mean '--port'\?/);
  t.match((await run(['audit', 'list', '--home'])).err, /^tyrum: option '--home' needs a value \(--home VALUE\) \[TYRUM_ERR_INVALID_ARGUMENT\]$/);
  t.match((await run(['audit', 'list', '--json=yes', '--home', home])).err, /option '--json' takes no value/);
});

t.test('the error code ends the first line; usage text follows on its own lines', async (t) => {
  for (const argv of [['token'], ['plugin', 'frobnicate'], ['policy', 'frobnicate'], ['run', 'frobnicate']]) {
    const r = await run(argv);
    t.equal(r.code, 2);
    const lines = r.err.split('\n');
    t.match(lines[0], /^tyrum: .* \[TYRUM_ERR_INVALID_ARGUMENT\]$/, argv.join(' '));
    for (const l of lines.slice(1)) t.notMatch(l, /\[TYRUM_ERR_/, 'no code glued to a later line');
  }
});

t.test('under --json an error is one JSON object on stderr; the exit code is unchanged', async (t) => {
  const home = join(t.testdir(), 'home');
  const missing = await run(['plugin', 'info', 'nope', '--json', '--home', home]);
  t.equal(missing.code, 1);
  t.equal(missing.out, '');
  t.match(JSON.parse(missing.err), { error: { code: 'TYRUM_ERR_NOT_FOUND', message: /nope/ } });
  const usage = await run(['plugin', 'list', '--bogus', '--json', '--home', home]);
  t.equal(usage.code, 2);
  t.same(JSON.parse(usage.err), { error: { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: "unknown option '--bogus' for 'tyrum plugin list' (see: tyrum plugin list --help)", details: { option: '--bogus' } } });
  const plain = await run(['plugin', 'info', 'nope', '--home', home]);
  t.match(plain.err, /^tyrum: .*nope.* \[TYRUM_ERR_NOT_FOUND\]$/, 'plain text without --json');
});

t.test('secret list --json gives ISO-8601 times, like every other JSON output', async (t) => {
  const home = join(t.testdir(), 'home');
  const svc = openHome(home);
  try {
    svc.secrets.set('API_TOKEN', Buffer.from('a-long-enough-secret'), ['api.example.com']);
  } finally {
    await svc.close();
  }
  const r = await run(['secret', 'list', '--json', '--home', home]);
  t.equal(r.code, 0, r.err);
  const [s] = (JSON.parse(r.out) as { secrets: Array<{ created_at: unknown; rotated_at: unknown }> }).secrets;
  t.match(s, { created_at: ISO, rotated_at: ISO });
});

t.test('the http-api install hint is complete: run as printed (HOST filled in), the plugin can be enabled', async (t) => {
  const home = join(t.testdir(), 'home');
  const inst = await run(['plugin', 'install', BUILT.httpApi, '--home', home]);
  t.equal(inst.code, 0, inst.err);
  const steps = inst.out.slice(inst.out.indexOf('next:\n')).split('\n').slice(1).filter((l) => l.startsWith('  tyrum') || l.startsWith("  printf")).map((l) => l.trim());
  t.match(steps, [/^printf '%s' "\$API_TOKEN" \| tyrum secret set API_TOKEN --destinations HOST/, /^tyrum plugin grant http-api --egress https:\/\/HOST=GET --secret API_TOKEN=HOST --accept-risk network,secrets$/, /^tyrum plugin config http-api --set base_url=https:\/\/HOST\/\.\.\.$/, /^tyrum plugin enable http-api$/]);
  t.match(inst.out, /--all-requested would grant it no network/);
  t.notMatch(inst.out, /grant http-api --all-requested/, 'not the grant that grants no egress');

  const svc = openHome(home);
  try {
    svc.secrets.set('API_TOKEN', Buffer.from('a-long-enough-secret'), ['api.example.com']);
  } finally {
    await svc.close();
  }
  const fill = (line: string) => line.replace(/HOST\/\.\.\./g, 'api.example.com/v1').replace(/HOST/g, 'api.example.com');
  for (const line of steps.slice(1)) {
    const argv = fill(line).split(' ').slice(1);
    const r = await run([...argv, '--home', home]);
    t.equal(r.code, 0, `${fill(line)}: ${r.err}`);
  }
  const info = JSON.parse((await run(['plugin', 'info', 'http-api', '--json', '--home', home])).out) as { plugin: { state: string; effective: { egress: Array<{ host: string }> } } };
  t.equal(info.plugin.state, 'enabled');
  t.match(info.plugin.effective.egress, [{ host: 'api.example.com' }], 'the grant gives it the host');

  const simple = await run(['plugin', 'install', BUILT.textUtils, '--home', home]);
  t.match(simple.out, /^next: tyrum plugin grant text-utils --all-requested && tyrum plugin enable text-utils$/m, 'one line when --all-requested is all it takes');
});

t.test('run get is human-readable by default and JSON with --json', async (t) => {
  const { H, env } = await cliGateway(t);
  t.equal((await run(['plugin', 'install', BUILT.textUtils, ...H])).code, 0);
  t.equal((await run(['plugin', 'grant', 'text-utils', '--all-requested', ...H])).code, 0);
  t.equal((await run(['plugin', 'enable', 'text-utils', ...H])).code, 0);
  const call = await run(['tool', 'call', 'text-utils.transform', '--args', '{"text":"Hi There","op":"slug"}'], env);
  t.equal(call.code, 0, call.err);
  const runs = JSON.parse((await run(['run', 'list', '--json'], env)).out) as { runs: Array<{ id: string }> };
  const id = runs.runs[0]!.id;
  const human = await run(['run', 'get', id], env);
  t.equal(human.code, 0, human.err);
  t.match(human.out, new RegExp(`^run ${id} \\(tool\\): succeeded$`, 'm'));
  t.match(human.out, /^step 0: text-utils\.transform succeeded/m);
  t.match(human.out, /^ {2}policy: allow by snapshot /m);
  t.match(human.out, /^ {2}attempt 1: succeeded at /m);
  t.match(human.out, /^ {2}result: .*hi-there/m);
  t.throws(() => JSON.parse(human.out), 'not JSON');
  const json = await run(['run', 'get', id, '--json'], env);
  t.match(JSON.parse(json.out), { run: { id, state: 'succeeded' }, steps: [{ tool_id: 'text-utils.transform' }] });
});
