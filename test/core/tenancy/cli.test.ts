/**
 * `tyrum tenant create|list` and `tyrum token create|list --tenant` (docs/tenancy.md): tenants
 * are made on the home by its operator; a token made with --tenant acts in that tenant; a home
 * that never names a tenant lists its tokens exactly as before. `tyrum secret set|list|rm --tenant`
 * keeps a tenant's handles apart from the host's.
 */
import t from 'tap';
import { runCli, cliGateway } from '../../helpers/cli.js';
import { connect } from '../../helpers/gateway.js';
import { secret } from '../../../core/cli/secret.js';
import { Redactor } from '../../../core/secrets/index.js';
import { listAudit } from '../../../core/audit/index.js';

/** `tyrum secret set NAME ARGS...` with `value` as its standard input. */
async function setSecret(home: string, name: string, value: string, args: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const code = await secret(['set', name, ...args, '--home', home], { out: (s) => out.push(s), err: () => undefined }, async () => Buffer.from(value));
  return { code, out: out.join('\n') };
}

t.test('tenants are created on the home; a token of one acts in it; a single-tenant home shows no tenant', async (t) => {
  const { gw, H } = await cliGateway(t);

  const plain = JSON.parse((await runCli(['token', 'list', '--json', ...H])).out) as { tokens: Array<Record<string, unknown>> };
  t.ok(plain.tokens.length > 0);
  t.ok(plain.tokens.every((x) => !('tenant' in x)), 'no tenant member while every token is the default tenant\'s');
  t.notMatch((await runCli(['token', 'list', ...H])).out, /TENANT/, 'and no TENANT column');
  t.same(JSON.parse((await runCli(['tenant', 'list', '--json', ...H])).out).tenants.map((x: { tenant: string }) => x.tenant), ['default']);

  const bad = await runCli(['tenant', 'create', 'Not Valid', ...H]);
  t.not(bad.code, 0, 'an invalid tenant id is refused');
  t.match(bad.err, /invalid tenant id/);
  const missing = await runCli(['token', 'create', '--scopes', 'operator.read', '--tenant', 'acme', ...H]);
  t.not(missing.code, 0, 'a token of a tenant that does not exist is refused');
  t.match(missing.err, /no tenant "acme"/);

  const created = await runCli(['tenant', 'create', 'acme', '--label', 'Acme Corp', '--json', ...H]);
  t.equal(created.code, 0, created.err);
  t.match(JSON.parse(created.out), { tenant: { tenant: 'acme', label: 'Acme Corp' } });
  const again = await runCli(['tenant', 'create', 'acme', ...H]);
  t.not(again.code, 0, 'a tenant is created once');
  t.match(again.err, /exists already/);
  t.same(JSON.parse((await runCli(['tenant', 'list', '--json', ...H])).out).tenants.map((x: { tenant: string }) => x.tenant), ['default', 'acme']);

  const node = await runCli(['token', 'create', '--scopes', 'operator.read', '--roles', 'client,node', '--tenant', 'acme', ...H]);
  t.not(node.code, 0, 'nodes belong to the host');
  t.match(node.err, /role client only/);

  const tok = await runCli(['token', 'create', '--scopes', 'operator.read,operator.write', '--tenant', 'acme', '--label', 'acme ops', '--json', ...H]);
  t.equal(tok.code, 0, tok.err);
  const { token, info } = JSON.parse(tok.out) as { token: string; info: { token_id: string; tenant: string } };
  t.equal(info.tenant, 'acme');
  const listed = JSON.parse((await runCli(['token', 'list', '--json', ...H])).out) as { tokens: Array<{ token_id: string; tenant: string }> };
  t.equal(listed.tokens.find((x) => x.token_id === info.token_id)?.tenant, 'acme');
  t.ok(listed.tokens.filter((x) => x.token_id !== info.token_id).every((x) => x.tenant === 'default'));
  t.match((await runCli(['token', 'list', ...H])).out, /TENANT/);
  t.same((JSON.parse((await runCli(['token', 'list', '--tenant', 'acme', '--json', ...H])).out) as { tokens: Array<{ token_id: string }> }).tokens.map((x) => x.token_id), [info.token_id]);

  // The token works at the running gateway, in its tenant.
  const { conn } = await connect(gw, { token });
  t.teardown(() => conn.ws.close());
  const conv = await conn.request('conversation.create', { title: 'acme chat' });
  t.equal(conv.ok, true);
  t.equal((await conn.request('plugin.enable', { plugin_id: 'x' })).ok, false, 'a host operation is forbidden');
  t.same(gw.conversations.list(10, undefined, undefined, 'default').map((c) => c.title), [], "the host tenant's list does not show it");
  t.same(gw.conversations.list(10, undefined, undefined, 'acme').map((c) => c.title), ['acme chat']);
});

t.test("secret set|list|rm --tenant: a tenant's handles, apart from the host's of the same name", async (t) => {
  const { gw, H } = await cliGateway(t);
  const home = H[1]!;
  await t.rejects(setSecret(home, 'API_KEY', 'acme-value-123', ['--destinations', 'api.example.com', '--tenant', 'acme']), { code: 'TYRUM_ERR_NOT_FOUND', message: /no tenant "acme"/ }, 'a tenant that does not exist is refused');
  t.equal((await runCli(['tenant', 'create', 'acme', ...H])).code, 0);

  const stored = await setSecret(home, 'API_KEY', 'acme-value-123', ['--destinations', 'api.example.com', '--tenant', 'acme']);
  t.equal(stored.code, 0, stored.out);
  t.match(stored.out, /stored API_KEY \(version 1\)/);
  t.same(JSON.parse((await runCli(['secret', 'list', '--json', ...H])).out).secrets, [], "the host's list does not show the tenant's handle");
  t.equal((await setSecret(home, 'API_KEY', 'host-value-456', ['--destinations', 'api.example.com'])).code, 0);
  const rotated = await setSecret(home, 'API_KEY', 'acme-value-789', ['--tenant', 'acme']);
  t.match(rotated.out, /rotated API_KEY \(version 2\) for api.example.com/, "a rotation keeps the tenant's handle's destinations");
  t.match(JSON.parse((await runCli(['secret', 'list', '--tenant', 'acme', '--json', ...H])).out), { secrets: [{ name: 'API_KEY', version: 2 }] });
  t.match(JSON.parse((await runCli(['secret', 'list', '--json', ...H])).out), { secrets: [{ name: 'API_KEY', version: 1 }] });
  t.match((await runCli(['secret', 'list', '--tenant', 'nope', ...H])).err, /no tenant "nope"/);

  // The running gateway reads each in its tenant, and redacts both.
  t.equal(gw.secrets.reveal('API_KEY', 'acme').toString(), 'acme-value-789');
  t.equal(gw.secrets.reveal('API_KEY').toString(), 'host-value-456');
  t.equal(Redactor.fromSecrets(gw.secrets).redactText('x acme-value-789 host-value-456'), 'x [REDACTED:API_KEY] [REDACTED:API_KEY]');
  const token = JSON.parse((await runCli(['token', 'create', '--scopes', 'operator.admin', '--tenant', 'acme', '--json', ...H])).out).token as string;
  const { conn } = await connect(gw, { token });
  t.teardown(() => conn.ws.close());
  t.match(await conn.request('secret.list', {}), { ok: true, result: { secrets: [{ name: 'API_KEY', version: 2 }] } }, "secret.list of the tenant's token: its handle");

  t.equal((await runCli(['secret', 'rm', 'API_KEY', '--tenant', 'acme', ...H])).code, 0);
  t.match((await runCli(['secret', 'rm', 'API_KEY', '--tenant', 'acme', ...H])).err, /no secret API_KEY of tenant "acme"/);
  t.equal(gw.secrets.has('API_KEY'), true, "the host's handle stays");
  t.equal(gw.secrets.has('API_KEY', 'acme'), false);
  await gw.audit.flush();
  const entries = listAudit(gw.store, { limit: 1000 }).filter((e) => e.type.startsWith('secret.'));
  t.same(entries.map((e) => [e.type, (e.data as { tenant?: string }).tenant ?? 'default']), [['secret.created', 'acme'], ['secret.created', 'default'], ['secret.rotated', 'acme'], ['secret.removed', 'acme']], 'audited, naming the tenant');
});

t.test("tyrum policy --tenant T shows, sets and revokes tenant T's own policy; without it, the host's as before", async (t) => {
  const { gw, H } = await cliGateway(t);
  const hostShow = await runCli(['policy', 'show', '--json', ...H]);
  t.equal(hostShow.code, 0, hostShow.err);
  const host = JSON.parse(hostShow.out) as Record<string, unknown>;
  t.same(Object.keys(host).sort(), ['bundle', 'history', 'overrides', 'snapshot_id']);
  t.match((await runCli(['policy', 'show', '--tenant', 'acme', ...H])).err, /no tenant "acme"/);
  t.equal((await runCli(['tenant', 'create', 'acme', ...H])).code, 0);

  t.match(JSON.parse((await runCli(['policy', 'show', '--tenant', 'acme', '--json', ...H])).out), { tenant: 'acme', snapshot_id: null, bundle: null, overrides: [], host_snapshot_id: host.snapshot_id });
  const file = `${gw.home}/acme-policy.json`;
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, JSON.stringify({ policy_version: 1, mode: 'enforce', defaults: { state_changing: 'allow' }, rules: [{ id: 'acme-review', decision: 'require_approval', match: { tools: ['text-utils.*'] } }] }));
  const set = await runCli(['policy', 'set', file, '--tenant', 'acme', ...H]);
  t.equal(set.code, 0, set.err);
  t.match(set.out, /^activated pol_/);
  t.same(JSON.parse((await runCli(['policy', 'show', '--json', ...H])).out), host, "the host's policy did not change");
  t.match(JSON.parse((await runCli(['policy', 'show', '--tenant', 'acme', '--json', ...H])).out), { bundle: { rules: [{ id: 'acme-review' }] } });
  t.match((await runCli(['policy', 'explain', 'text-utils.word_count', '--tenant', 'acme', ...H])).out, /tenant acme policy pol_/);

  gw.store.tx(() => gw.store.tenants.insert({ id: 'globex', label: 'globex', created_at: Date.now() }));
  const own = gw.policy.addOverride({ tool_id: 'text-utils.word_count', created_by: 'token:x', tenant: 'acme' });
  t.not((await runCli(['policy', 'override-revoke', own.id, ...H])).code, 0, "the host's override-revoke does not find acme's");
  t.not((await runCli(['policy', 'override-revoke', own.id, '--tenant', 'globex', ...H])).code, 0, "nor globex's");
  const revoked = await runCli(['policy', 'override-revoke', own.id, '--tenant', 'acme', ...H]);
  t.equal(revoked.code, 0, revoked.err);
  t.match(revoked.out, `revoked ${own.id}`);
  t.match(JSON.parse((await runCli(['policy', 'show', '--tenant', 'acme', '--json', ...H])).out), { overrides: [{ id: own.id, status: 'revoked' }] });
});
