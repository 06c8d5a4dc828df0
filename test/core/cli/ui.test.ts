// tyrum ui: a sign-in link with a fresh operator token in the URL fragment, and with --bootstrap
// the tyrum://bootstrap payload carrying a single-use node bootstrap token.
import t from 'tap';
import { runCli, cliGateway } from '../../helpers/cli.js';
import { connect } from '../../helpers/gateway.js';

t.test('tyrum ui prints a link whose fragment token signs in; --bootstrap a single-use node token', async (t) => {
  const { gw, H } = await cliGateway(t);
  const r = await runCli(['ui', '--json', '--bootstrap', '--scopes', 'operator.read,operator.approvals', ...H]);
  t.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { url: string; token_id: string; expires_at: string; bootstrap: { url: string; token_id: string; expires_at: string } };
  const u = new URL(out.url);
  t.equal(u.pathname, '/');
  t.equal(u.search, '', 'nothing in the query string (it would reach logs)');
  const token = decodeURIComponent(/^#token=(.+)$/.exec(u.hash)![1]!);
  const { hello } = await connect(gw, { token });
  t.same(hello.scopes.sort(), ['operator.approvals', 'operator.read']);
  t.ok(Date.parse(out.expires_at) - Date.now() > 29 * 86_400_000, 'default lifetime 30 days');

  const b = new URL(out.bootstrap.url);
  t.equal(b.protocol, 'tyrum:');
  t.equal(b.host, 'bootstrap');
  t.match(b.searchParams.get('http'), /^http:\/\/127\.0\.0\.1:\d+$/);
  t.match(b.searchParams.get('ws'), /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  const rec = gw.store.tokens.get(out.bootstrap.token_id)!;
  t.match(rec, { kind: 'node_enrollment', single_use: true, scopes: [], roles: ['node'] });
  t.ok(rec.expires_at! - Date.now() <= 300_000, 'five minutes');
  t.match(b.searchParams.get('token'), new RegExp(`^tyrum_${out.bootstrap.token_id}_`));

  const human = await runCli(['ui', ...H]);
  t.equal(human.code, 0);
  t.match(human.out, /^http:\/\/127\.0\.0\.1:\d+\/#token=tyrum_/);
  t.match(human.err, /tyrum token revoke/);
  t.equal((await runCli(['ui', '--bootstrap', '--bootstrap-ttl', '1h', ...H])).code, 2, 'a bootstrap token lives at most 15 minutes');
});
