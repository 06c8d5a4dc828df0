// Truncation must survive a restart: deleting the newest audit rows and starting the gateway
// again used to append from the shortened chain and sign a new checkpoint over it, after which
// `tyrum audit verify` passed. The gateway now checks the chain against the signed checkpoint
// before it starts and before every checkpoint it signs.
import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { startGateway, type RunningGateway } from '../../../core/runtime.js';
import { runCli } from '../../helpers/cli.js';
import { connect } from '../../helpers/gateway.js';

const start = (home: string, acceptTamperedAudit = false): Promise<RunningGateway> =>
  startGateway({ home, overrides: { port: 0 }, logLevel: false, ...(acceptTamperedAudit ? { acceptTamperedAudit } : {}) });

/** Use the gateway a little: a few audited token creations. */
async function use(gw: RunningGateway, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const created = await gw.tokens.create({ scopes: ['operator.read'], roles: ['client'], label: `t${i}`, createdBy: 'test' });
    await gw.audit.append('token.created', { kind: 'cli' }, { token_id: created.record.id });
  }
}

/** The attacker: delete the newest `n` audit rows with a plain SQLite connection. */
function truncate(home: string, n: number): void {
  const db = new Database(join(home, 'tyrum.db'));
  try {
    db.prepare('DELETE FROM audit_entries WHERE seq > (SELECT MAX(seq) FROM audit_entries) - ?').run(n);
  } finally {
    db.close();
  }
}

function checkpointSeq(home: string): number {
  return (JSON.parse(readFileSync(join(home, 'audit.checkpoint.json'), 'utf8')) as { seq: number }).seq;
}

t.test('a truncated log stops the gateway from starting, with a coded error saying how to proceed', async (t) => {
  const home = join(t.testdir(), 'home');
  const gw = await start(home);
  await use(gw, 5);
  await gw.close();
  const signed = checkpointSeq(home);
  truncate(home, 3);

  await t.rejects(start(home), { code: 'TYRUM_ERR_AUDIT_TAMPERED', message: /truncated.*--accept-tampered-audit/s });
  t.equal(checkpointSeq(home), signed, 'the refused start signed nothing');

  const cli = await runCli(['start', '--home', home, '--port', '0', '--log-level', 'silent']);
  t.equal(cli.code, 1);
  t.match(cli.err, /TYRUM_ERR_AUDIT_TAMPERED/);
  t.match(cli.err, /--accept-tampered-audit/);

  const verify = await runCli(['audit', 'verify', '--home', home]);
  t.equal(verify.code, 1, 'audit verify still reports the truncation');
  t.match(verify.err, /log truncated/);

  const token = await runCli(['token', 'create', '--scopes', 'operator.read', '--home', home]);
  t.equal(token.code, 1, 'a CLI command that would append refuses too');
  t.match(token.err, /TYRUM_ERR_AUDIT_TAMPERED/);
  t.equal(checkpointSeq(home), signed, 'still nothing signed');
});

t.test('a rewritten entry at the checkpoint, a deleted or a forged checkpoint also refuse the start', async (t) => {
  const home = join(t.testdir(), 'home');
  const gw = await start(home);
  await use(gw, 2);
  await gw.close();
  const seq = checkpointSeq(home);
  const db = new Database(join(home, 'tyrum.db'));
  db.prepare('UPDATE audit_entries SET hash = ? WHERE seq = ?').run('e'.repeat(64), seq);
  db.close();
  await t.rejects(start(home), { code: 'TYRUM_ERR_AUDIT_TAMPERED', message: new RegExp(`entry ${seq}.*does not match`) });

  const home2 = join(t.testdir(), 'home2');
  const gw2 = await start(home2);
  await gw2.close();
  const { rmSync, writeFileSync } = await import('node:fs');
  const cpPath = join(home2, 'audit.checkpoint.json');
  const genuine = readFileSync(cpPath, 'utf8');
  rmSync(cpPath);
  await t.rejects(start(home2), { code: 'TYRUM_ERR_AUDIT_TAMPERED', message: /no signed checkpoint/ });
  writeFileSync(cpPath, genuine.replace(/"seq": \d+/, '"seq": 1'));
  await t.rejects(start(home2), { code: 'TYRUM_ERR_AUDIT_TAMPERED', message: /signature is invalid/ });
});

t.test('with --accept-tampered-audit the gateway starts and the tampering is reported for good', async (t) => {
  const home = join(t.testdir(), 'home');
  const gw = await start(home);
  await use(gw, 5);
  await gw.close();
  truncate(home, 3);

  const accepted = await start(home, true);
  await use(accepted, 2);
  const entries = accepted.audit.list({ type: 'audit.tampering_accepted' });
  t.equal(entries.length, 1, 'the acceptance is itself an audit entry');
  t.match(entries[0]?.data, { reason: /truncated/ });
  await accepted.close();

  // Several ordinary restarts and more appends: the record stays in every checkpoint.
  for (let round = 0; round < 3; round++) {
    const again = await start(home);
    await use(again, 2);
    await again.close();
    const cp = JSON.parse(readFileSync(join(home, 'audit.checkpoint.json'), 'utf8')) as { seq: number; tampered?: unknown[] };
    t.equal(cp.tampered?.length, 1, `round ${round}: the checkpoint still carries the tampering`);

    const verify = await runCli(['audit', 'verify', '--home', home]);
    t.equal(verify.code, 1, `round ${round}: audit verify exits non-zero`);
    t.match(verify.err, /tamper/i);
    t.match(verify.err, /truncated/);
    const json = JSON.parse((await runCli(['audit', 'verify', '--home', home, '--json'])).out) as { ok: boolean; tampered?: Array<{ reason: string }>; first_bad?: unknown };
    t.equal(json.ok, false);
    t.match(json.tampered, [{ reason: /truncated/ }]);
    t.equal(json.first_bad, undefined, 'the chain itself verifies since the acceptance');

    const doctor = await runCli(['doctor', '--home', home, '--json']);
    const report = JSON.parse(doctor.out) as { checks: Array<{ name: string; ok: boolean; detail: string }> };
    t.match(report.checks.find((c) => c.name === 'audit chain'), { ok: false, detail: /tamper.*truncated/is }, `round ${round}: doctor reports it`);
  }
});

t.test('a log truncated while the gateway runs gets no checkpoint over the shortened chain', async (t) => {
  const home = join(t.testdir(), 'home');
  const gw = await start(home);
  let closed = false;
  t.teardown(() => (closed ? undefined : gw.close().catch(() => undefined)));
  await use(gw, 5);
  await gw.audit.flush();
  const signed = checkpointSeq(home);
  truncate(home, 3);
  // Appending past the old head would once have signed a checkpoint over the forged chain.
  for (let i = 0; i < 6; i++) await gw.audit.append('test.event', { kind: 'cli' }, { i });
  await t.rejects(gw.audit.flush(), { code: 'TYRUM_ERR_AUDIT_TAMPERED' }, 'signing the checkpoint is refused');
  t.equal(checkpointSeq(home), signed, 'the checkpoint still names the original head');
  closed = true;
  await gw.close();
  t.equal(checkpointSeq(home), signed, 'stopping signs nothing either');
  const verify = await runCli(['audit', 'verify', '--home', home]);
  t.equal(verify.code, 1);
  t.match(verify.err, /does not match the signed checkpoint|truncated/);
  await t.rejects(start(home), { code: 'TYRUM_ERR_AUDIT_TAMPERED' }, 'and the next start is refused');
});

t.test('audit.verify over the protocol reports a log truncated while the gateway runs', async (t) => {
  const home = join(t.testdir(), 'home');
  const gw = await start(home);
  t.teardown(() => gw.close());
  await use(gw, 4);
  await gw.audit.flush();
  truncate(home, 2);
  await gw.audit.append('test.event', { kind: 'cli' }, {});
  const { conn } = await connect(gw, { token: gw.bootstrapToken });
  t.teardown(() => conn.ws.close());
  const v = await conn.request('audit.verify');
  t.equal(v.ok, true, 'answered, not failed with an internal error');
  t.match(v.result, { ok: false, reason: /truncated|does not match the signed checkpoint/ });
});
