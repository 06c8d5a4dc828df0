import t from 'tap';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openHome, type HomeServices } from '../../../core/runtime.js';
import { listAudit } from '../../../core/audit/index.js';
import { pluginDir } from './helpers.js';

const CLI = { kind: 'cli', user: 'test' };

// Not in t.testdir(): the tests call t.testdir() again (for plugin sources), which empties it
// under the open home, and the audit log rightly reports a checkpoint gone from a live home.
async function home(t: { teardown(fn: () => unknown): void }): Promise<HomeServices> {
  const dir = mkdtempSync(join(tmpdir(), 'tyrum-lifecycle-'));
  const svc = openHome(join(dir, 'home'));
  t.teardown(async () => {
    await svc.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return svc;
}

t.test('a new plugin is installed quarantined and cannot be enabled until the operator grants it', async (t) => {
  const svc = await home(t);
  const src = await pluginDir(t.testdir(), { id: 'echo', wat: 'echo', tools: [{ id: 'echo' }] });
  const r = await svc.plugins.install(src, CLI);
  t.equal(r.action, 'installed');
  t.equal(r.plugin.state, 'disabled');
  t.match(r.plugin.blockers, [/not granted/]);
  await t.rejects(svc.plugins.enable('echo', CLI), { code: 'TYRUM_ERR_INVALID_STATE', message: /not granted/ });
  await svc.plugins.grant('echo', { allRequested: true }, CLI);
  const on = await svc.plugins.enable('echo', CLI);
  t.equal(on.state, 'enabled');
  t.same(svc.plugins.enabled().map((p) => p.record.id), ['echo']);
  const again = await svc.plugins.install(src, CLI);
  t.equal(again.action, 'unchanged', 'reinstalling the same files changes nothing');
  await svc.audit.flush();
  t.same(listAudit(svc.store, { limit: 100 }).map((e) => e.type), ['plugin.installed', 'plugin.granted', 'plugin.enabled']);
});

t.test('a declared risk keeps the plugin disabled until explicitly accepted; --all-requested does not accept it', async (t) => {
  const svc = await home(t);
  const src = await pluginDir(t.testdir(), { id: 'writer', wat: 'echo', tools: [{ id: 'echo', effect: 'state_changing' }], requests: { kv: { quota_bytes: 1024 } }, risk: ['state_changing', 'storage'] });
  await svc.plugins.install(src, CLI);
  const g = await svc.plugins.grant('writer', { allRequested: true }, CLI);
  t.same(g.effective.missing_risks, ['state_changing', 'storage']);
  t.same(g.effective.kv, { quota_bytes: 1024 }, 'capabilities granted');
  await t.rejects(svc.plugins.enable('writer', CLI), { message: /risk not accepted: state_changing, storage/ });
  await t.rejects(svc.plugins.grant('writer', { allRequested: true, acceptRisks: ['network'] }, CLI), { message: /does not declare risk network/ });
  const ok = await svc.plugins.grant('writer', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  t.same(ok.blockers, []);
  t.equal((await svc.plugins.enable('writer', CLI)).state, 'enabled');
});

t.test('a grant narrows and never widens; revoke disables', async (t) => {
  const svc = await home(t);
  const src = await pluginDir(t.testdir(), {
    id: 'net',
    wat: 'echo',
    tools: [{ id: 'echo' }],
    requests: { egress: [{ host: 'api.example.com', methods: ['GET', 'POST'] }], memory: { max_pages: 64 } },
    risk: ['network'],
  });
  await svc.plugins.install(src, CLI);
  const p = await svc.plugins.grant('net', { grant: { egress: [{ host: 'api.example.com', methods: ['GET', 'DELETE'] }, { host: 'evil.example.com' }], memory: { max_pages: 4096 } }, acceptRisks: ['network'] }, CLI);
  t.same(p.effective.egress, [{ host: 'api.example.com', port: 443, scheme: 'https', methods: ['GET'] }]);
  t.same(p.effective.memory, { max_pages: 64 }, 'memory is the smaller of request and grant');
  await svc.plugins.enable('net', CLI);
  const r = await svc.plugins.revoke('net', CLI);
  t.equal(r.state, 'disabled');
  t.equal(r.grant, null);
  t.same(r.effective.egress, []);
});

t.test('an upgrade that asks for more shows the permission diff and waits for a new grant; downgrades are refused', async (t) => {
  const svc = await home(t);
  const parent = t.testdir();
  await svc.plugins.install(await pluginDir(parent, { id: 'up', wat: 'echo', tools: [{ id: 'echo' }] }), CLI);
  await svc.plugins.grant('up', { allRequested: true }, CLI);
  await svc.plugins.enable('up', CLI);
  const same = await svc.plugins.install(await pluginDir(parent, { id: 'up', wat: 'echo', version: '1.1.0', tools: [{ id: 'echo' }] }), CLI);
  t.equal(same.action, 'upgraded');
  t.same(same.diff, []);
  t.equal(same.plugin.state, 'enabled', 'asking for nothing new keeps it enabled');
  const more = await svc.plugins.install(
    await pluginDir(parent, { id: 'up', wat: 'echo', version: '2.0.0', tools: [{ id: 'echo' }], requests: { egress: [{ host: 'api.example.com' }] }, risk: ['network'] }),
    CLI,
  );
  t.equal(more.action, 'upgraded');
  t.match(more.diff, [{ kind: 'egress', change: 'added' }, { kind: 'risk', change: 'added', detail: 'network' }]);
  t.equal(more.plugin.state, 'disabled', 'asking for more disables it until re-granted');
  t.same(more.plugin.effective.egress, [], 'the old grant does not cover the new request');
  await t.rejects(svc.plugins.install(await pluginDir(parent, { id: 'up', wat: 'echo', version: '1.0.0', tools: [{ id: 'echo' }] }), CLI), { code: 'TYRUM_ERR_PLUGIN_DOWNGRADE' });
  t.equal(svc.plugins.get('up').plugin.version, '2.0.0', 'the refused downgrade changed nothing');
});

t.test('an upgrade that asks for more keeps its permission diff until the operator grants again, and it blocks enabling meanwhile', async (t) => {
  const svc = await home(t);
  const parent = t.testdir();
  const v = (version: string, requests: Record<string, unknown>) => pluginDir(parent, { id: 'pd', wat: 'echo', version, tools: [{ id: 'echo' }], requests, risk: ['network'] });
  const one = { egress: [{ host: 'a.example.com' }] };
  await svc.plugins.install(await v('1.0.0', one), CLI);
  t.equal(svc.plugins.get('pd').plugin.pending_upgrade, null, 'a first install has no upgrade diff');
  await svc.plugins.grant('pd', { allRequested: true, acceptRisks: ['network'] }, CLI);
  await svc.plugins.enable('pd', CLI);
  const quiet = await svc.plugins.install(await v('1.1.0', one), CLI);
  t.equal(quiet.plugin.pending_upgrade, null, 'an upgrade asking for nothing new leaves nothing to review');
  // No new risk flag: the accepted risks still cover it, so only the diff blocks enabling.
  await svc.plugins.install(await v('2.0.0', { egress: [{ host: 'a.example.com' }, { host: 'b.example.com' }] }), CLI);
  const more = await svc.plugins.install(await v('3.0.0', { egress: [{ host: 'a.example.com' }, { host: 'b.example.com' }], memory: { max_pages: 512 } }), CLI);
  t.match(more.plugin.pending_upgrade, { from_version: '1.0.0', to_version: '3.0.0', diff: [{ kind: 'egress', change: 'added', detail: /b\.example\.com/ }, { kind: 'memory' }] }, 'two upgrades add up against the granted version');
  t.equal(more.plugin.state, 'disabled');
  t.match(more.plugin.blockers, [/^upgrade 1\.0\.0 → 3\.0\.0 asks for more \(egress added: .*b\.example\.com.*memory/]);
  t.equal(more.plugin.blockers.length, 1, 'the diff is the only blocker');
  await t.rejects(svc.plugins.enable('pd', CLI), { code: 'TYRUM_ERR_INVALID_STATE', message: /asks for more/ });
  const listed = svc.plugins.list().find((p) => p.id === 'pd');
  t.match(listed?.pending_upgrade, { to_version: '3.0.0' }, 'the list shows it too');

  const granted = await svc.plugins.grant('pd', { allRequested: true, acceptRisks: ['network'] }, CLI);
  t.equal(granted.pending_upgrade, null, 'granting is the review: the diff is cleared');
  t.same(granted.blockers, []);
  t.equal((await svc.plugins.enable('pd', CLI)).state, 'enabled');
  await svc.audit.flush();
  const grants = listAudit(svc.store, { limit: 100 }).filter((e) => e.type === 'plugin.granted');
  t.match(grants[grants.length - 1]?.data, { reviewed_upgrade: { from_version: '1.0.0', to_version: '3.0.0' } }, 'the audit log records which upgrade the grant reviewed');
});

t.test('the pending diff is recomputed against what the grant covered on every version change', async (t) => {
  const svc = await home(t);
  const parent = t.testdir();
  const v = (id: string, version: string, hosts: string[]) => pluginDir(parent, { id, wat: 'echo', version, tools: [{ id: 'echo' }], requests: { egress: hosts.map((host) => ({ host })) }, risk: ['network'] });

  await t.test('a downgrade back to the granted version clears the diff and the plugin can be enabled', async (t) => {
    await svc.plugins.install(await v('dg', '1.0.0', ['a.example.com']), CLI);
    await svc.plugins.grant('dg', { allRequested: true, acceptRisks: ['network'] }, CLI);
    await svc.plugins.enable('dg', CLI);
    const up = await svc.plugins.install(await v('dg', '2.0.0', ['a.example.com', 'evil.example.com']), CLI);
    t.match(up.plugin.pending_upgrade, { from_version: '1.0.0', to_version: '2.0.0', diff: [{ kind: 'egress', change: 'added', detail: /evil\.example\.com/ }] });
    t.equal(up.plugin.state, 'disabled');
    await t.rejects(svc.plugins.enable('dg', CLI), { code: 'TYRUM_ERR_INVALID_STATE', message: /upgrade 1\.0\.0 → 2\.0\.0 asks for more/ });
    const back = await svc.plugins.install(await v('dg', '1.0.0', ['a.example.com']), CLI, { allowDowngrade: true });
    t.equal(back.action, 'downgraded');
    t.equal(back.plugin.pending_upgrade, null, 'nothing exceeds the grant: no pending diff');
    t.same(back.plugin.blockers, [], 'nothing blocks it');
    t.equal((await svc.plugins.enable('dg', CLI)).state, 'enabled', 'the granted version can be enabled again');
  });

  await t.test('two upgrades that each ask for more show the diff from the granted version', async (t) => {
    await svc.plugins.install(await v('tw', '1.0.0', ['a.example.com']), CLI);
    await svc.plugins.grant('tw', { allRequested: true, acceptRisks: ['network'] }, CLI);
    const first = await svc.plugins.install(await v('tw', '1.1.0', ['a.example.com', 'b.example.com']), CLI);
    t.match(first.plugin.pending_upgrade, { from_version: '1.0.0', to_version: '1.1.0' });
    t.equal(first.plugin.pending_upgrade?.diff.length, 1);
    const second = await svc.plugins.install(await v('tw', '1.2.0', ['a.example.com', 'b.example.com', 'c.example.com']), CLI);
    t.match(second.plugin.pending_upgrade, { from_version: '1.0.0', to_version: '1.2.0', diff: [{ kind: 'egress', change: 'added', detail: /b\.example\.com/ }, { kind: 'egress', change: 'added', detail: /c\.example\.com/ }] });
    t.equal(second.plugin.pending_upgrade?.diff.length, 2, 'everything 1.2.0 asks for beyond 1.0.0, nothing else');
    t.match(second.plugin.blockers, [/^upgrade 1\.0\.0 → 1\.2\.0 asks for more/]);
    // A later version that drops one of the new hosts shows only what still exceeds the grant.
    const third = await svc.plugins.install(await v('tw', '1.3.0', ['a.example.com', 'c.example.com']), CLI);
    t.match(third.plugin.pending_upgrade, { from_version: '1.0.0', to_version: '1.3.0', diff: [{ detail: /c\.example\.com/ }] });
    t.equal(third.plugin.pending_upgrade?.diff.length, 1);
  });

  await t.test('a grant made before migration 17 (what it covered unknown) keeps summing diffs until the next grant: fails safe', async (t) => {
    await svc.plugins.install(await v('old', '1.0.0', ['a.example.com']), CLI);
    await svc.plugins.grant('old', { allRequested: true, acceptRisks: ['network'] }, CLI);
    svc.store.plugins.setGrant({ ...svc.store.plugins.getGrant('old')!, granted_for: null });
    await svc.plugins.install(await v('old', '2.0.0', ['a.example.com', 'evil.example.com']), CLI);
    const back = await svc.plugins.install(await v('old', '1.0.0', ['a.example.com']), CLI, { allowDowngrade: true });
    t.match(back.plugin.pending_upgrade, { from_version: '1.0.0', to_version: '1.0.0', diff: [{ detail: /evil\.example\.com/ }] });
    const granted = await svc.plugins.grant('old', { allRequested: true, acceptRisks: ['network'] }, CLI);
    t.equal(granted.pending_upgrade, null, 'a new grant clears it and keeps what it covers');
    t.match(svc.store.plugins.getGrant('old')?.granted_for, /"version":"1\.0\.0"/);
  });
});

t.test('an upgrade of a plugin that was never granted records no diff: its whole request awaits the first grant', async (t) => {
  const svc = await home(t);
  const parent = t.testdir();
  await svc.plugins.install(await pluginDir(parent, { id: 'ng', wat: 'echo', tools: [{ id: 'echo' }] }), CLI);
  const up = await svc.plugins.install(await pluginDir(parent, { id: 'ng', wat: 'echo', version: '2.0.0', tools: [{ id: 'echo' }], requests: { memory: { max_pages: 512 } } }), CLI);
  t.equal(up.diff.length, 1, 'the install reports the diff');
  t.equal(up.plugin.pending_upgrade, null);
  t.match(up.plugin.blockers, [/not granted/]);
});

t.test('config is validated with defaults; secret fields accept only granted handles; remove deletes everything', async (t) => {
  const svc = await home(t);
  svc.secrets.set('API_TOKEN', Buffer.from('s3cret-value-123'), ['api.example.com']);
  const src = await pluginDir(t.testdir(), {
    id: 'cfg',
    wat: 'echo',
    tools: [{ id: 'echo' }],
    requests: { secrets: [{ name: 'API_TOKEN', destinations: ['api.example.com'] }] },
    risk: ['secrets'],
    config_schema: { type: 'object', required: ['base'], properties: { base: { type: 'string' }, retries: { type: 'integer', default: 3 }, token: { type: 'string', 'x-tyrum-secret': true } } },
  });
  await svc.plugins.install(src, CLI);
  await svc.plugins.grant('cfg', { allRequested: true, acceptRisks: ['secrets'] }, CLI);
  t.match(svc.plugins.get('cfg').plugin.blockers, [/config/], 'missing required config blocks enabling');
  await t.rejects(svc.plugins.configure('cfg', { base: 'x', extra: 1 }, CLI), { message: /extra/ });
  await t.rejects(svc.plugins.configure('cfg', { base: 'x', token: 's3cret-value-123' }, CLI), { message: /token/ });
  const saved = await svc.plugins.configure('cfg', { base: 'x', token: 'API_TOKEN' }, CLI);
  t.same(saved, { base: 'x', retries: 3, token: 'API_TOKEN' });
  t.equal((await svc.plugins.enable('cfg', CLI)).state, 'enabled');
  await svc.audit.flush();
  t.notMatch(JSON.stringify(listAudit(svc.store, { limit: 100 })), /s3cret-value-123/, 'the refused secret value never reached the audit log');
  const files = join(svc.paths.home, 'plugins', 'cfg');
  t.ok(existsSync(files));
  await svc.plugins.remove('cfg', CLI);
  t.notOk(existsSync(files), 'files removed');
  t.equal(svc.store.plugins.get('cfg'), undefined);
  t.equal(svc.store.plugins.getConfig('cfg'), undefined, 'config removed with it');
  await t.rejects(svc.plugins.enable('cfg', CLI), { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('bad manifests are refused at install and nothing is recorded (E5)', async (t) => {
  const svc = await home(t);
  const src = await pluginDir(t.testdir(), { id: 'bad', wat: 'echo', tools: [{ id: 'echo' }] });
  const manifestPath = join(src, 'tyrum.plugin.json');
  const m = JSON.parse((await import('node:fs')).readFileSync(manifestPath, 'utf8'));
  writeFileSync(manifestPath, JSON.stringify({ ...m, engines: { tyrum: '^2.0.0' } }));
  await t.rejects(svc.plugins.install(src, CLI), { code: 'TYRUM_ERR_PLUGIN_INCOMPATIBLE', message: /\^2\.0\.0.*1\.0\.0/ });
  writeFileSync(manifestPath, JSON.stringify({ ...m, surprise: true }));
  await t.rejects(svc.plugins.install(src, CLI), { code: 'TYRUM_ERR_MANIFEST_INVALID', message: /surprise/ });
  t.same(svc.plugins.list(), []);
});
