// tyrum node enroll / list / approve / deny / revoke on the home, with a running gateway that
// delivers the token and closes revoked nodes (issue 12).
import t from 'tap';
import { runCli, cliGateway } from '../../helpers/cli.js';
import { connect } from '../../helpers/gateway.js';

const CAPS = [{ id: 'fs.read', version: '1' }, { id: 'shell.exec', version: '1' }, { id: 'camera.snap', version: '3' }];

t.test('enroll, list, approve (the gateway delivers the token), revoke by name, deny', async (t) => {
  const { gw, H } = await cliGateway(t);
  const enrolled = await runCli(['node', 'enroll', '--ttl', '2h', '--json', ...H]);
  t.equal(enrolled.code, 0, enrolled.err);
  const { token: enroll, expires_at } = JSON.parse(enrolled.out) as { token: string; expires_at: string };
  t.ok(Date.parse(expires_at) > Date.now() + 3600_000, 'expires in about two hours');
  t.equal((await runCli(['node', 'enroll', '--ttl', '10s', ...H])).code, 2, 'a ttl under a minute is refused');

  const node = await connect(gw, { token: enroll, role: 'node', capabilities: CAPS, label: 'ci runner' });
  const listed = await runCli(['node', 'list', ...H]);
  t.equal(listed.code, 0, listed.err);
  t.match(listed.out, /pair_[0-9a-f]{16}\tawaiting_human\t-\t-\tdev_[a-z2-7]+\tci runner\t127\.0\.0\.1\tadvertised: fs\.read@1,shell\.exec@1,camera\.snap@3/);
  t.match(listed.err, /tyrum node approve PAIRING_ID --allow/);
  const id = /pair_[0-9a-f]{16}/.exec(listed.out)![0];

  const unknown = await runCli(['node', 'approve', id, '--allow', 'camera.flash', ...H]);
  t.equal(unknown.code, 1);
  t.match(unknown.err, /did not advertise camera\.flash.*TYRUM_ERR_NODE_CAPABILITY_UNKNOWN/);
  const noContract = await runCli(['node', 'approve', id, '--allow', 'camera.snap', ...H]);
  t.equal(noContract.code, 1);
  t.match(noContract.err, /camera\.snap@3 has no contract this gateway knows/);
  t.equal((await runCli(['node', 'approve', id, ...H])).code, 2, '--allow is required');
  t.equal((await runCli(['node', 'approve', id, '--allow', 'fs.read', '--trust', 'galactic', ...H])).code, 2);

  const approved = await runCli(['node', 'approve', id, '--allow', 'fs.read,shell.exec@1', '--read-only', 'fs.read', '--name', 'ci', ...H]);
  t.equal(approved.code, 0, approved.err);
  t.match(approved.out, /approved pair_[0-9a-f]{16}: node ci \(remote\), capabilities fs\.read@1\(ro\),shell\.exec@1/);
  // The running gateway notices the approval made by this other connection and delivers the token.
  const cred = await node.conn.incoming('pairing.credential', 5000);
  node.conn.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  const { token } = cred.payload as { token: string };
  const paired = await connect(gw, { token, role: 'node', device: node.device, capabilities: CAPS });
  t.match((await runCli(['node', 'list', '--json', ...H])).out, /"state":"approved"/);

  const t0 = Date.now();
  const revoked = await runCli(['node', 'revoke', 'ci', '--reason', 'decommissioned', ...H]);
  t.equal(revoked.code, 0, revoked.err);
  t.match(revoked.out, /revoked pair_[0-9a-f]{16} \(ci\); its token [0-9a-f]{16} is dead/);
  t.equal((await paired.conn.closeCode(3000)).code, 4001, 'the node is closed');
  t.ok(Date.now() - t0 < 2000, `within the revocation watcher's second (${Date.now() - t0} ms)`);
  t.equal((await runCli(['node', 'revoke', 'ci', ...H])).code, 1, 'no approved node named ci any more');

  // A second node, denied: it is closed.
  const other = await connect(gw, { token: enroll, role: 'node', capabilities: CAPS });
  const pending = JSON.parse((await runCli(['node', 'list', '--state', 'awaiting_human', '--json', ...H])).out) as { pairings: Array<{ pairing_id: string; device_id: string }> };
  const mine = pending.pairings.find((p) => p.device_id === other.device.device_id)!;
  const denied = await runCli(['node', 'deny', mine.pairing_id, '--reason', 'unknown', ...H]);
  t.equal(denied.code, 0, denied.err);
  t.match(await other.conn.closeCode(3000), { code: 4001, reason: 'pairing denied' });
  const all = await runCli(['node', 'list', '--all', ...H]);
  t.match(all.out, /\trevoked\t/);
  t.match(all.out, /\tdenied\t/);
  t.equal((await runCli(['node', 'list', '--all', '--state', 'denied', ...H])).code, 2);
  t.equal((await runCli(['node', 'frobnicate', ...H])).code, 2);
});

t.test('node run: usage errors say what to do', async (t) => {
  const dir = t.testdir({ ws: {} });
  const noToken = await runCli(['node', 'run', '--workspace', `${dir}/ws`, '--state-dir', `${dir}/state`], { TYRUM_NODE_ENROLLMENT_TOKEN: '' });
  t.equal(noToken.code, 2);
  t.match(noToken.err, /this node has no token yet .*export TYRUM_NODE_ENROLLMENT_TOKEN=\$\(tyrum node enroll\)/);
  const inside = await runCli(['node', 'run', '--workspace', `${dir}/ws`, '--state-dir', `${dir}/ws/state`], { TYRUM_NODE_ENROLLMENT_TOKEN: 'tyrum_x' });
  t.equal(inside.code, 2);
  t.match(inside.err, /must not contain each other/);
  t.equal((await runCli(['node', 'run'])).code, 2, '--workspace is required');
});

t.test('tyrum token revoke of a node token revokes its pairing too (none left approved with a dead token)', async (t) => {
  const { gw, H } = await cliGateway(t);
  const enroll = JSON.parse((await runCli(['node', 'enroll', '--json', ...H])).out) as { token: string };
  const node = await connect(gw, { token: enroll.token, role: 'node', capabilities: CAPS });
  const id = /pair_[0-9a-f]{16}/.exec((await runCli(['node', 'list', ...H])).out)![0];
  t.equal((await runCli(['node', 'approve', id, '--allow', 'fs.read', ...H])).code, 0);
  const cred = await node.conn.incoming('pairing.credential', 5000);
  node.conn.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  const { token_id } = cred.payload as { token_id: string };
  const revoked = await runCli(['token', 'revoke', token_id, ...H]);
  t.equal(revoked.code, 0, revoked.err);
  const all = JSON.parse((await runCli(['node', 'list', '--all', '--json', ...H])).out) as { pairings: Array<{ pairing_id: string; state: string; reason: string | null }> };
  t.match(all.pairings.find((p) => p.pairing_id === id), { state: 'revoked', reason: 'its node token was revoked' });
});
