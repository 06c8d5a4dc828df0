import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { runCli, cliGateway } from '../../helpers/cli.js';
import { parseEgressFlag } from '../../../core/cli/plugin.js';
import { BUILT, pluginDir } from '../registry/helpers.js';

const run = runCli;

const BIN = join(import.meta.dirname, '../../../bin/tyrum.js');

t.test('secret set reads the value from stdin only; list and audit never show it', async (t) => {
  const home = join(t.testdir(), 'home');
  const value = `sv-${Math.random().toString(36).slice(2)}-value`;
  const set = spawnSync(process.execPath, [BIN, 'secret', 'set', 'API_TOKEN', '--destinations', 'api.example.com', '--home', home], { input: `${value}\n`, encoding: 'utf8' });
  t.equal(set.status, 0, set.stderr);
  t.match(set.stdout, /stored API_TOKEN \(version 1\) for api\.example\.com/);
  const rot = spawnSync(process.execPath, [BIN, 'secret', 'set', 'API_TOKEN', '--home', home], { input: `${value}-2`, encoding: 'utf8' });
  t.equal(rot.status, 0, rot.stderr);
  t.match(rot.stdout, /rotated API_TOKEN \(version 2\) for api\.example\.com/, 'rotation keeps the destinations');
  const list = await run(['secret', 'list', '--json', '--home', home]);
  t.match(JSON.parse(list.out), { secrets: [{ name: 'API_TOKEN', version: 2, destinations: ['api.example.com'] }] });
  const audit = await run(['audit', 'list', '--json', '--home', home]);
  t.match(audit.out, /secret.created[\s\S]*secret.rotated/);
  for (const text of [list.out, audit.out, readFileSync(join(home, 'tyrum.db')).toString('latin1')]) t.notOk(text.includes(value), 'value absent');
  const none = spawnSync(process.execPath, [BIN, 'secret', 'set', 'NEW_ONE', '--home', home], { input: 'whatever-value', encoding: 'utf8' });
  t.equal(none.status, 2);
  t.match(none.stderr, /--destinations is required/);
  const origin = spawnSync(process.execPath, [BIN, 'secret', 'set', 'LOCAL_TOKEN', '--destinations', 'http://127.0.0.1:8080,api.example.com', '--home', home], { input: `${value}-local`, encoding: 'utf8' });
  t.equal(origin.status, 0, origin.stderr);
  t.match(origin.stdout, /stored LOCAL_TOKEN \(version 1\) for http:\/\/127\.0\.0\.1:8080, api\.example\.com/);
  const badOrigin = spawnSync(process.execPath, [BIN, 'secret', 'set', 'LOCAL_TOKEN', '--destinations', 'ftp://127.0.0.1', '--home', home], { input: `${value}-local`, encoding: 'utf8' });
  t.equal(badOrigin.status, 2, 'an invalid argument');
  t.match(badOrigin.stderr, /destination "ftp:\/\/127\.0\.0\.1" is not an exact host \(https, port 443\) or origin/);
  t.equal((await run(['secret', 'rm', 'LOCAL_TOKEN', '--home', home])).code, 0);
  const empty = spawnSync(process.execPath, [BIN, 'secret', 'set', 'NEW_ONE', '--destinations', 'a.example', '--home', home], { input: '', encoding: 'utf8' });
  t.equal(empty.status, 2);
  t.match(empty.stderr, /no value on standard input/);
  t.equal((await run(['secret', 'rm', 'API_TOKEN', '--home', home])).code, 0);
  t.equal((await run(['secret', 'rm', 'API_TOKEN', '--home', home])).code, 1);
});

t.test('--egress flags parse to exact grants and refuse paths and other schemes', async (t) => {
  t.same(parseEgressFlag('https://api.github.com'), { host: 'api.github.com', scheme: 'https' });
  t.same(parseEgressFlag('http://127.0.0.1:8080=get,post'), { host: '127.0.0.1', scheme: 'http', port: 8080, methods: ['GET', 'POST'] });
  t.throws(() => parseEgressFlag('https://api.github.com/repos'), { message: /scheme, host and port only/ });
  t.throws(() => parseEgressFlag('ftp://x.example'), { message: /only http and https/ });
  t.throws(() => parseEgressFlag('not a url'), { message: /expected a URL/ });
});

t.test('the plugin workflow from the CLI: install quarantined, grant, enable, call through the gateway', async (t) => {
  const { H, env } = await cliGateway(t);
  const inst = await run(['plugin', 'install', BUILT.textUtils, ...H]);
  t.equal(inst.code, 0, inst.err);
  t.match(inst.out, /installed text-utils 1\.0\.0 \(disabled: quarantined until granted and enabled\)/);
  t.match(inst.out, /next: tyrum plugin grant text-utils --all-requested && tyrum plugin enable text-utils/);
  const early = await run(['plugin', 'enable', 'text-utils', ...H]);
  t.equal(early.code, 1);
  t.match(early.err, /cannot be enabled: not granted/);
  t.equal((await run(['plugin', 'grant', 'text-utils', ...H])).code, 2, 'a grant must say what it grants');
  t.equal((await run(['plugin', 'grant', 'text-utils', '--all-requested', ...H])).code, 0);
  t.equal((await run(['plugin', 'enable', 'text-utils', ...H])).code, 0);
  const lock = JSON.parse((await run(['plugin', 'lock', ...H])).out) as { lock_version: number; plugins: Array<{ id: string; wasm_sha256: string; grant: unknown; state: string }> };
  t.match(lock, { lock_version: 1, plugins: [{ id: 'text-utils', wasm_sha256: /^[0-9a-f]{64}$/, grant: {}, state: 'enabled' }] });
  const list = await run(['plugin', 'list', ...H]);
  t.match(list.out, /text-utils\t1\.0\.0\tenabled/);
  // No wait: a request first picks up what the CLI committed.
  const tools = await run(['tool', 'list', '--json'], env);
  t.equal(tools.code, 0, tools.err);
  t.same((JSON.parse(tools.out) as { tools: Array<{ tool_id: string }> }).tools.map((x) => x.tool_id), ['text-utils.transform', 'text-utils.word_count']);
  const call = await run(['tool', 'call', 'text-utils.transform', '--args', '{"text":"Crème Brûlée!","op":"slug"}'], env);
  t.equal(call.code, 0, call.err);
  t.same(JSON.parse(call.out), { text: 'creme-brulee' });
  const bad = await run(['tool', 'call', 'text-utils.transform', '--args', '{"text":"x","op":"explode"}'], env);
  t.equal(bad.code, 1);
  t.match(bad.err, /\/op/);
  const notJson = await run(['tool', 'call', 'text-utils.transform', '--args', '{oops'], env);
  t.equal(notJson.code, 2);
  t.match(notJson.err, /--args must be a JSON object/);

  t.equal((await run(['plugin', 'install', BUILT.httpApi, ...H])).code, 0);
  const grant = await run(['plugin', 'grant', 'http-api', '--egress', 'https://api.github.com=GET', '--secret', 'API_TOKEN=api.github.com', '--accept-risk', 'network,secrets', ...H]);
  t.equal(grant.code, 0, grant.err);
  t.match(grant.out, /effective: egress https:\/\/api\.github\.com:443 GET; secrets API_TOKEN->api\.github\.com/);
  // A local plain-http API: the secret destination names the origin explicitly.
  const local = await run(['plugin', 'grant', 'http-api', '--egress', 'http://127.0.0.1:8080=GET', '--secret', 'API_TOKEN=HTTP://127.0.0.1:8080', '--accept-risk', 'network,secrets', ...H]);
  t.equal(local.code, 0, local.err);
  t.match(local.out, /secrets API_TOKEN->http:\/\/127\.0\.0\.1:8080/);
  const withPath = await run(['plugin', 'grant', 'http-api', '--secret', 'API_TOKEN=http://127.0.0.1:8080/v1', ...H]);
  t.equal(withPath.code, 2, 'a destination with a path is refused');
  t.match(withPath.err, /invalid grant: \/secrets\/0\/destinations\/0: must match pattern.*TYRUM_ERR_INVALID_ARGUMENT/);
  const grant2 = await run(['plugin', 'grant', 'http-api', '--egress', 'https://api.github.com=GET', '--secret', 'API_TOKEN=api.github.com', '--accept-risk', 'network,secrets', ...H]);
  t.equal(grant2.code, 0, grant2.err);
  const cfgBad = await run(['plugin', 'config', 'http-api', '--set', 'base_url=https://api.github.com', '--set', 'token_handle=NOPE', ...H]);
  t.equal(cfgBad.code, 1);
  t.match(cfgBad.err, /token_handle/);
  const info = await run(['plugin', 'info', 'http-api', '--json', ...H]);
  t.match(JSON.parse(info.out), { plugin: { state: 'disabled', blockers: [/config/] } });
  const rm = await run(['plugin', 'remove', 'http-api', ...H]);
  t.equal(rm.code, 0);
  t.equal((await run(['plugin', 'info', 'http-api', ...H])).code, 1);
});

t.test('tyrum plugin info shows an upgrade that asks for more until the plugin is granted again', async (t) => {
  const { H } = await cliGateway(t);
  const parent = t.testdir();
  const v = (version: string, hosts: string[]) => pluginDir(parent, { id: 'upcli', wat: 'echo', version, tools: [{ id: 'echo' }], requests: { egress: hosts.map((host) => ({ host })) }, risk: ['network'] });
  t.equal((await run(['plugin', 'install', await v('1.0.0', ['a.example.com']), ...H])).code, 0);
  t.equal((await run(['plugin', 'grant', 'upcli', '--all-requested', '--accept-risk', 'network', ...H])).code, 0);
  const up = await run(['plugin', 'install', await v('2.0.0', ['a.example.com', 'b.example.com']), ...H]);
  t.equal(up.code, 0, up.err);
  t.match(up.out, /asks for more: egress added: https:\/\/b\.example\.com:443/);
  const info = await run(['plugin', 'info', 'upcli', ...H]);
  t.match(info.out, /upgrade: {3}1\.0\.0 → 2\.0\.0 asks for more than was granted \(review, then tyrum plugin grant upcli \.\.\.\):\n {4}egress added: https:\/\/b\.example\.com:443/);
  t.equal((await run(['plugin', 'grant', 'upcli', '--all-requested', '--accept-risk', 'network', ...H])).code, 0);
  const after = await run(['plugin', 'info', 'upcli', '--json', ...H]);
  t.match(JSON.parse(after.out), { plugin: { pending_upgrade: null, blockers: [] } });
});
