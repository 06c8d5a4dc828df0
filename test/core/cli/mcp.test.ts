// `tyrum mcp ...` end to end, in-process (runCli) on a temp home, against real servers:
// server-everything (from npm) and the hostile fixture server. add probes and prints what was
// listed; list/tools/diff show the review state; approve pins; remove forgets; bad input exits
// 2 (usage) or 1 (not found, refused), and a server that cannot start is still declared with a
// warning and a probe_failed health.
import t from 'tap';
import { isAbsolute, join, relative } from 'node:path';
import { writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../helpers/cli.js';
import { openHome } from '../../../core/runtime.js';

const EVERYTHING = fileURLToPath(new URL('../../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url));
const HOSTILE = fileURLToPath(new URL('../../fixtures/mcp/hostile-server.mjs', import.meta.url));
const FLAKY = fileURLToPath(new URL('../../fixtures/mcp/flaky-server.mjs', import.meta.url));

type ToolView = { tool_id: string; name: string; status: string; effect: string; observed_hash: string | null; approved_hash: string | null; refused: string | null; hints: Record<string, unknown> | null };
type ServerView = { name: string; origin: string; state: string; transport: string; spec: Record<string, unknown>; health: Record<string, unknown> | null; tools: Record<string, number> };

t.test('add, list, tools, diff, approve and remove a stdio server', async (t) => {
  const home = join(t.testdir(), 'home');
  const cli = (...argv: string[]) => runCli([...argv, '--home', home]);

  const add = await runCli(['mcp', 'add', 'everything', '--home', home, '--description', 'reference server', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(add.code, 0, add.err);
  t.match(add.out, /added MCP server everything \(stdio; quarantined until approved\)/);
  const listed = Number(/listed (\d+) tools/.exec(add.out)?.[1]);
  t.ok(listed >= 10, `the probe listed the server's tools (${listed})`);
  t.match(add.out, /next: tyrum mcp diff everything/);
  t.equal(add.err, '', 'no warning');

  const list = await cli('mcp', 'list');
  t.equal(list.code, 0);
  t.match(list.out, /^NAME\tORIGIN\tTRANSPORT\tSTATE\tTOOLS\tHEALTH$/m);
  t.match(list.out, new RegExp(`^everything\toperator\tstdio\tquarantined\t0 approved, ${listed} pending, 0 changed, 0 refused\tprobed$`, 'm'));
  const listJson = JSON.parse((await cli('mcp', 'list', '--json')).out) as { servers: ServerView[] };
  t.match(listJson.servers, [{ name: 'everything', origin: 'operator', state: 'quarantined', transport: 'stdio', spec: { transport: 'stdio', command: 'node', args: [EVERYTHING, 'stdio'] }, health: { status: 'probed', tools: listed }, tools: { pending: listed, approved: 0 } }]);
  t.equal(listJson.servers.length, 1);

  const toolsOut = await cli('mcp', 'tools', 'everything');
  t.equal(toolsOut.code, 0);
  t.match(toolsOut.out, /^mcp\.everything\.echo\tpending\t-\t\{.*"readOnlyHint":true\}$/m, 'hints are shown (as untrusted)');
  const toolsJson = JSON.parse((await cli('mcp', 'tools', 'everything', '--json')).out) as { server: string; tools: ToolView[] };
  t.equal(toolsJson.tools.length, listed);
  t.ok(toolsJson.tools.every((x) => x.status === 'pending' && x.approved_hash === null && /^[0-9a-f]{64}$/.test(x.observed_hash ?? '')), 'all pending, none pinned');

  const diff = await cli('mcp', 'diff', 'everything');
  t.equal(diff.code, 0);
  t.match(diff.out, /^everything: quarantined \(operator, stdio\); 0 approved/m);
  t.match(diff.out, /^mcp\.everything\.echo {2}new, not approved yet$/m);
  t.match(diff.out, /description: "Echoes back the input string"/);
  t.match(diff.out, /inputSchema: \{[\s\S]*"message"/);
  t.match(diff.out, /hints \(not trusted\): \{[^}]*"readOnlyHint":true/);
  const diffJson = JSON.parse((await cli('mcp', 'diff', 'everything', '--json')).out) as { state: string; tools: Array<{ tool_id: string; status: string; approved: unknown; observed: { name: string } }> };
  t.equal(diffJson.state, 'quarantined');
  t.equal(diffJson.tools.length, listed);
  t.match(diffJson.tools.find((x) => x.tool_id === 'mcp.everything.echo'), { status: 'pending', approved: null, observed: { name: 'echo', description: 'Echoes back the input string' } });

  const bad = await cli('mcp', 'approve', 'everything', '--read-only', 'echo,nope');
  t.equal(bad.code, 1);
  t.match(bad.err, /MCP server everything lists no tool nope \[TYRUM_ERR_NOT_FOUND\]/);
  t.equal(JSON.parse((await cli('mcp', 'list', '--json')).out).servers[0].state, 'quarantined', 'a failed approve changes nothing');

  const approve = await cli('mcp', 'approve', 'everything', '--read-only', 'echo,get-sum');
  t.equal(approve.code, 0, approve.err);
  t.match(approve.out, new RegExp(`^approved everything: ${listed} tools pinned$`, 'm'));
  t.match(approve.out, /^ {2}mcp\.everything\.echo\tread_only\tsha256:[0-9a-f]{16}…$/m);
  t.match(approve.out, /^ {2}mcp\.everything\.get-sum\tread_only\tsha256:/m);
  t.match(approve.out, /^ {2}mcp\.everything\.get-env\tstate_changing\tsha256:/m, 'not named read-only: state_changing');
  const pinned = (JSON.parse((await cli('mcp', 'tools', 'everything', '--json')).out) as { tools: ToolView[] }).tools;
  t.match(pinned.find((x) => x.name === 'echo'), { status: 'approved', effect: 'read_only' });
  t.match(pinned.find((x) => x.name === 'get-env'), { status: 'approved', effect: 'state_changing' });
  t.ok(pinned.every((x) => x.approved_hash !== null && x.approved_hash === x.observed_hash), 'every definition pinned at the hash it lists now');
  t.match((await cli('mcp', 'tools', 'everything')).out, /^mcp\.everything\.echo\tapproved\tread_only\t/m);
  t.match((await cli('mcp', 'list')).out, new RegExp(`^everything\toperator\tstdio\tapproved\t${listed} approved, 0 pending`, 'm'));
  t.match((await cli('mcp', 'diff', 'everything')).out, /nothing awaits review/);
  t.match((await cli('mcp', 'diff', 'everything', '--all')).out, /mcp\.everything\.echo {2}approved/);

  // --refresh re-probes: an unchanged server still has nothing to review.
  const refresh = await cli('mcp', 'diff', 'everything', '--refresh');
  t.equal(refresh.code, 0, refresh.err);
  t.match(refresh.out, /nothing awaits review/);

  const svc = openHome(home);
  try {
    const audit = svc.audit.list({ limit: 1000 }).map((e) => e.type);
    t.match(audit, ['mcp.server_added', 'mcp.tools_observed', 'mcp.approved']);
    t.match(svc.audit.list({ type: 'mcp.approved' }), [{ actor: { kind: 'cli' }, data: { server: 'everything' } }]);
  } finally {
    await svc.close();
  }

  const dup = await runCli(['mcp', 'add', 'everything', '--home', home, '--no-probe', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(dup.code, 1);
  t.match(dup.err, /already exists \(remove it first\) \[TYRUM_ERR_CONFLICT\]/);

  const rm = await cli('mcp', 'remove', 'everything');
  t.equal(rm.code, 0, rm.err);
  t.match(rm.out, /removed MCP server everything/);
  t.same(JSON.parse((await cli('mcp', 'list', '--json')).out), { servers: [] });
  const again = await cli('mcp', 'remove', 'everything');
  t.equal(again.code, 1);
  t.match(again.err, /no MCP server named everything \[TYRUM_ERR_NOT_FOUND\]/);
});

t.test('hostile schemas: add reports the refused tools, diff shows why, approve skips them', async (t) => {
  const home = join(t.testdir(), 'home');
  const cli = (...argv: string[]) => runCli([...argv, '--home', home]);
  const add = await runCli(['mcp', 'add', 'hostile', '--home', home, '--', process.execPath, HOSTILE, 'screen']);
  t.equal(add.code, 0, add.err);
  t.match(add.out, /listed 5 tools; 4 refused: /);
  for (const name of ['huge_schema', 'deep_schema', 'redos_pattern', 'remote_ref']) t.match(add.out, new RegExp(`${name} \\(`), `${name} named as refused`);
  t.match((await cli('mcp', 'list')).out, /^hostile\toperator\tstdio\tquarantined\t0 approved, 1 pending, 0 changed, 4 refused\t/m);

  const diff = await cli('mcp', 'diff', 'hostile');
  t.match(diff.out, /^mcp\.hostile\.remote_ref {2}REFUSED at registration\n {2}reason: inputSchema: \$ref at \/properties\/x\/\$ref is not local/m);
  t.match(diff.out, /^mcp\.hostile\.redos_pattern {2}REFUSED at registration\n {2}reason: .*pattern/m);
  t.match(diff.out, /^mcp\.hostile\.normal_tool {2}new, not approved yet$/m);
  t.ok(diff.out.length < 20_000, `the 3 MB schema is not printed (${diff.out.length} chars)`);

  const only = await cli('mcp', 'approve', 'hostile', '--tool', 'deep_schema');
  t.equal(only.code, 1, 'approving nothing but refused tools fails');
  t.match(only.out, /approved hostile: 0 tools pinned\n {2}skipped deep_schema: refused: /);

  const all = await cli('mcp', 'approve', 'hostile', '--json');
  t.equal(all.code, 0, all.err);
  const r = JSON.parse(all.out) as { approved: Array<{ tool_id: string; effect: string }>; skipped: Array<{ name: string; reason: string }> };
  t.same(r.approved.map((a) => [a.tool_id, a.effect]), [['mcp.hostile.normal_tool', 'state_changing']]);
  t.same(r.skipped.map((s) => s.name).sort(), ['deep_schema', 'huge_schema', 'redos_pattern', 'remote_ref']);
  for (const s of r.skipped) t.match(s.reason, /^refused: /);
});

t.test('bad input: usage errors exit 2, unknown servers and refusals exit 1', async (t) => {
  const home = join(t.testdir(), 'home');
  const cli = (...argv: string[]) => runCli([...argv, '--home', home]);

  for (const sub of ['tools', 'diff', 'approve', 'remove']) {
    const r = await cli('mcp', sub, 'nope');
    t.equal(r.code, 1, `mcp ${sub} of an unknown server`);
    t.match(r.err, /no MCP server named nope \[TYRUM_ERR_NOT_FOUND\]/);
  }

  const noCommand = await cli('mcp', 'add', 'empty');
  t.equal(noCommand.code, 2, 'add without a command');
  t.match(noCommand.err, /give exactly one of: -- COMMAND/);
  const emptyCommand = await runCli(['mcp', 'add', 'empty', '--home', home, '--']);
  t.equal(emptyCommand.code, 2, 'add with nothing after --');
  const noName = await runCli(['mcp', 'add', '--home', home]);
  t.equal(noName.code, 2);
  t.match(noName.err, /missing NAME: usage: tyrum mcp add NAME/);
  const both = await runCli(['mcp', 'add', 'two', '--home', home, '--url', 'http://127.0.0.1:1/mcp', '--', 'node', EVERYTHING]);
  t.equal(both.code, 2, 'a command and a URL');
  t.equal((await cli('mcp')).code, 2);
  t.equal((await cli('mcp', 'frobnicate')).code, 2);
  t.equal((await cli('mcp', 'tools')).code, 2, 'tools without a name');

  const badName = await runCli(['mcp', 'add', 'Bad.Name', '--home', home, '--no-probe', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(badName.code, 2);
  t.match(badName.err, /MCP server name "Bad\.Name" is not allowed/);

  for (const name of ['TYRUM_TOKEN', 'TYRUM_X', 'tyrum_home']) {
    const r = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--inherit-env', `HOME,${name}`, '--', 'node', EVERYTHING, 'stdio']);
    t.equal(r.code, 2, `--inherit-env ${name} is refused`);
    t.match(r.err, new RegExp(`inherit_env: ${name} is the gateway's own configuration and is never passed to a server`));
  }
  const missingSecret = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--env', 'API_KEY={{secret:NOT_SET}}', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(missingSecret.code, 1);
  t.match(missingSecret.err, /env\.API_KEY: secret NOT_SET does not exist/);
  const badPair = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--env', 'NOEQUALS', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(badPair.code, 2);
  t.match(badPair.err, /--env "NOEQUALS": expected NAME=VALUE/);
  const headerOnStdio = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--header', 'A=b', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(headerOnStdio.code, 2);
  const creds = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--url', 'https://user:pw@mcp.example.com/mcp']);
  t.equal(creds.code, 2);
  t.match(creds.err, /credentials in the URL are not allowed/);
  const badTimeout = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--timeout', '5s', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(badTimeout.code, 2);
  const lowTimeout = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--timeout', '5', '--', 'node', EVERYTHING, 'stdio']);
  t.equal(lowTimeout.code, 2, 'below the spec minimum');
  t.match(lowTimeout.err, /call_timeout_ms/);

  const specFile = join(t.testdir(), 'spec.json');
  writeFileSync(specFile, '{"transport": "stdio", "command": ');
  const badSpec = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--spec', specFile]);
  t.equal(badSpec.code, 2);
  t.match(badSpec.err, /--spec .*spec\.json: /);
  writeFileSync(specFile, JSON.stringify({ transport: 'wasm' }));
  const wasm = await runCli(['mcp', 'add', 'leaky', '--home', home, '--no-probe', '--spec', specFile]);
  t.equal(wasm.code, 2);
  t.match(wasm.err, /a wasm MCP server is declared by its plugin manifest/);

  t.same(JSON.parse((await cli('mcp', 'list', '--json')).out), { servers: [] }, 'nothing refused was stored');
});

t.test('a command that cannot start: the server is declared, with a warning and a probe_failed health', async (t) => {
  const home = join(t.testdir(), 'home');
  const add = await runCli(['mcp', 'add', 'ghost', '--home', home, '--', '/nonexistent/tyrum-no-such-mcp-server', '--flag']);
  t.equal(add.code, 0, 'declared anyway');
  t.match(add.out, /added MCP server ghost \(stdio; quarantined until approved\)/);
  t.notMatch(add.out, /listed \d+ tools/);
  t.match(add.err, /warning: could not list the server's tools now: .*ENOENT/);
  t.match(add.err, /a running gateway keeps retrying/);

  const list = await runCli(['mcp', 'list', '--home', home]);
  t.match(list.out, /^ghost\toperator\tstdio\tquarantined\t0 approved, 0 pending, 0 changed, 0 refused\tprobe_failed: .*ENOENT/m);
  t.match(JSON.parse((await runCli(['mcp', 'list', '--json', '--home', home])).out), { servers: [{ name: 'ghost', health: { status: 'probe_failed', error: /ENOENT/ } }] });
  t.same(JSON.parse((await runCli(['mcp', 'tools', 'ghost', '--json', '--home', home])).out), { server: 'ghost', tools: [] });

  const exits = await runCli(['mcp', 'add', 'exits', '--home', home, '--', process.execPath, '-e', 'process.exit(7)']);
  t.equal(exits.code, 0);
  t.match(exits.err, /warning: could not list the server's tools now: could not start an MCP session/);

  const noProbe = await runCli(['mcp', 'add', 'later', '--home', home, '--no-probe', '--', '/nonexistent/also-missing']);
  t.equal(noProbe.code, 0);
  t.equal(noProbe.err, '', '--no-probe: no attempt, no warning');
  t.match(JSON.parse((await runCli(['mcp', 'list', '--json', '--home', home])).out).servers, [{ name: 'exits' }, { name: 'ghost' }, { name: 'later', health: null }]);
});

t.test('a secret handle in --env is stored as the handle; the probe fills in the value', async (t) => {
  const home = join(t.testdir(), 'home');
  const value = `probe-secret-${Math.random().toString(36).slice(2)}`;
  const svc = openHome(home);
  try {
    svc.secrets.set('PROBE_TOKEN', Buffer.from(value), ['api.example.com']);
  } finally {
    await svc.close();
  }
  const sha = createHash('sha256').update(value).digest('hex');
  const add = await runCli(['mcp', 'add', 'withsecret', '--home', home, '--env', 'API_KEY={{secret:PROBE_TOKEN}}', '--env', 'MODE=a=b', '--', process.execPath, FLAKY, '--require-env', `API_KEY=${sha}`]);
  t.equal(add.code, 0, add.err);
  t.match(add.out, /listed 5 tools/, 'the server started: API_KEY held the secret value');
  t.equal(add.err, '');
  const list = await runCli(['mcp', 'list', '--json', '--home', home]);
  t.match(JSON.parse(list.out), { servers: [{ name: 'withsecret', spec: { env: { API_KEY: '{{secret:PROBE_TOKEN}}', MODE: 'a=b' } }, health: { status: 'probed' } }] }, 'the value of --env may contain "="');
  t.notOk(list.out.includes(value), 'the spec holds the handle, not the value');
  t.notOk((await runCli(['audit', 'list', '--json', '--home', home])).out.includes(value), 'nor does the audit log');

  // The check in the fixture bites: the literal handle text is not the value.
  const literal = await runCli(['mcp', 'add', 'literal', '--home', home, '--env', 'API_KEY=PROBE_TOKEN', '--', process.execPath, FLAKY, '--require-env', `API_KEY=${sha}`]);
  t.equal(literal.code, 0);
  t.match(literal.err, /warning: could not list the server's tools now: .*API_KEY is not the expected value/);
});

t.test('mcp add from another directory: relative paths to existing files are resolved and stored absolute (the README quickstart)', async (t) => {
  const home = join(t.testdir(), 'home');
  const cwd = process.cwd();
  const here = t.testdir({ 'server.mjs': '// not a server\n' });
  process.chdir(here);
  t.teardown(() => process.chdir(cwd));
  const rel = relative(here, EVERYTHING);
  t.notOk(isAbsolute(rel));
  const add = await runCli(['mcp', 'add', 'everything', '--home', home, '--', 'node', rel, 'stdio']);
  t.equal(add.code, 0, add.err);
  t.match(add.out, /listed \d+ tools/, 'the server started although its working directory is in the home');
  t.equal(add.err, '', 'no warning');
  t.match(add.out, new RegExp(`resolved against ${here.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${rel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const list = JSON.parse((await runCli(['mcp', 'list', '--json', '--home', home])).out) as { servers: ServerView[] };
  t.same(list.servers[0]?.spec.args, [EVERYTHING, 'stdio'], 'stored absolute; a bare word that names no file is left alone');
  t.equal(list.servers[0]?.spec.command, 'node', 'a bare command name stays for PATH lookup');

  // A command with a slash is a path, resolved too; flags and words that name no file are not.
  const cmd = await runCli(['mcp', 'add', 'local', '--home', home, '--no-probe', '--', `./server.mjs`, '--config', 'nothing-here.json', '-x']);
  t.equal(cmd.code, 0, cmd.err);
  t.match(JSON.parse((await runCli(['mcp', 'list', '--json', '--home', home])).out), { servers: [{ name: 'everything' }, { name: 'local', spec: { command: join(here, 'server.mjs'), args: ['--config', 'nothing-here.json', '-x'] } }] });
});

t.test('a server that fails at start: the warning shows its first error line, not only the tail of stderr', async (t) => {
  const home = join(t.testdir(), 'home');
  const add = await runCli(['mcp', 'add', 'broken', '--home', home, '--', process.execPath, '/nonexistent/tyrum-missing-server.js', 'stdio']);
  t.equal(add.code, 0, 'declared anyway');
  t.match(add.err, /warning: could not list the server's tools now: .*Error( \[ERR_MODULE_NOT_FOUND\])?: Cannot find module '\/nonexistent\/tyrum-missing-server\.js'/);
  t.notMatch(add.err, /\| {2}\| Node\.js/, 'not just the tail');
});

t.test('a tyrum flag after -- is passed to the server, with a warning saying so', async (t) => {
  const home = join(t.testdir(), 'home');
  const add = await runCli(['mcp', 'add', 'flagged', '--home', home, '--no-probe', '--', 'node', EVERYTHING, 'stdio', '--home', '/elsewhere', '--json']);
  t.equal(add.code, 0, add.err);
  t.match(add.err, /warning: --home comes after --, so it was passed to the server, not to tyrum; put tyrum's options before --/);
  t.match(add.err, /warning: --json comes after --/);
  t.match(JSON.parse((await runCli(['mcp', 'list', '--json', '--home', home])).out), { servers: [{ name: 'flagged', spec: { args: [EVERYTHING, 'stdio', '--home', '/elsewhere', '--json'] } }] });
  const quiet = await runCli(['mcp', 'add', 'quiet', '--home', home, '--no-probe', '--', 'node', EVERYTHING, 'stdio', '--port', '3', '--constructor']);
  t.equal(quiet.err, '', 'a flag tyrum mcp add does not take (--constructor included, an Object.prototype name): no warning');
});
