/**
 * `tyrum doctor`'s checks in the running gateway (`doctor.run`): what it reports on a healthy
 * home, that it is admin-only and changes nothing, that a report is reused for a few seconds, and
 * that it finds a group-readable home, an upgrade waiting for review and a tampered audit log.
 */
import t from 'tap';
import { chmodSync } from 'node:fs';
import { startTestGateway, removeHome, connect, externalWrite, TEST_STORE } from '../../helpers/gateway.js';
import { gatewayDoctor, DOCTOR_REUSE_MS, type DoctorReport } from '../../../core/doctor/checks.js';
import { homePaths, loadConfig } from '../../../core/config/index.js';
import { pluginDir } from '../registry/helpers.js';

const CLI = { kind: 'cli', user: 'test' };

t.test('doctor.run reports the checks of tyrum doctor for the gateway\'s own home, to admins only', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const { conn: admin } = await connect(gw);
  t.teardown(() => admin.ws.close());
  const readTok = await gw.tokens.create({ scopes: ['operator.read', 'operator.write', 'operator.approvals'], createdBy: 'test' });
  const { conn: reader } = await connect(gw, { token: readTok.token });
  t.teardown(() => reader.ws.close());
  t.match(await reader.request('doctor.run', {}), { ok: false, error: { code: 'forbidden' } }, 'operator.read cannot make the gateway walk its database');

  const auditBefore = gw.store.audit.count();
  const r = await admin.request('doctor.run', {});
  t.equal(r.ok, true, JSON.stringify(r.error));
  const report = r.result as DoctorReport;
  t.equal(report.ok, true);
  t.same(report.checks.map((c) => c.name), ['home', 'config', 'database', 'gateway key', 'audit chain', 'plugins']);
  t.same(report.checks.filter((c) => c.status !== 'ok'), [], 'a fresh home passes every check');
  t.match(report.checks.find((c) => c.name === 'database')?.detail, TEST_STORE === 'postgres' ? /^PostgreSQL: .*schema=v\d+/ : /journal_mode=wal .*quick_check=ok schema=v\d+/);
  t.match(report.checks.find((c) => c.name === 'home')?.detail, /mode 700/);
  t.match(report.checks.find((c) => c.name === 'audit chain')?.detail, /\d+ entries verify; checkpoint at \d+/);
  const again = (await admin.request('doctor.run', {})).result as DoctorReport;
  t.equal(again.checked_at, report.checked_at, 'a call within the reuse window gets the same report');
  await gw.audit.flush();
  t.equal(gw.store.audit.count(), auditBefore, 'running the checks writes nothing to the audit log');
});

t.test('the gateway doctor finds a group-readable home, an upgrade to review and a tampered audit log', async (t) => {
  const gw = await startTestGateway();
  let now = 1_000_000;
  let befores = 0;
  const doctor = gatewayDoctor({ home: gw.home, paths: homePaths(gw.home), store: gw.store, storeSettings: loadConfig(gw.home).store, key: gw.key, plugins: () => gw.plugins.list(),
    now: () => now,
    before: async () => {
      befores += 1;
      await new Promise((r) => setTimeout(r, 20));
    },
  });
  t.teardown(async () => {
    await doctor.close();
    await gw.close();
    removeHome(gw.home);
  });
  const run = doctor.run;
  t.equal((await run()).ok, true);
  t.equal(DOCTOR_REUSE_MS, 60_000, 'a report is reused for a minute');

  chmodSync(gw.home, 0o755);
  const parent = t.testdir();
  await gw.plugins.install(await pluginDir(parent, { id: 'up', wat: 'echo', tools: [{ id: 'echo' }] }), CLI);
  await gw.plugins.grant('up', { allRequested: true }, CLI);
  await gw.plugins.install(await pluginDir(parent, { id: 'up', wat: 'echo', version: '2.0.0', tools: [{ id: 'echo' }], requests: { memory: { max_pages: 512 } } }), CLI);
  now += DOCTOR_REUSE_MS - 1;
  t.equal((await run()).ok, true, 'still the earlier report');
  now += 1;
  // Calls made while a check is in flight wait for it and get its report: one walk, not three.
  const concurrent = await Promise.all([run(), run(), run()]);
  t.ok(concurrent.every((r) => r === concurrent[0]), 'concurrent calls share one check');
  t.equal(befores, 2, 'one fresh check for the three concurrent calls (and one for the first call)');
  const found = concurrent[0]!;
  t.equal(found.ok, false);
  t.match(found.checks.find((c) => c.name === 'home'), { status: 'fail', detail: /mode 755; run: chmod 700/ });
  t.match(found.checks.find((c) => c.name === 'plugins'), { status: 'warn', detail: /up \(upgrade 1\.0\.0 → 2\.0\.0 to review\)/ });
  chmodSync(gw.home, 0o700);

  await gw.audit.flush();
  await externalWrite(gw.home, 'UPDATE audit_entries SET data = ? WHERE seq = 1', ['{"tampered":true}']);
  now += DOCTOR_REUSE_MS;
  const tampered = await run();
  t.match(tampered.checks.find((c) => c.name === 'audit chain'), { status: 'fail', detail: /^entry 1: hash mismatch \(entry edited\)$/ });
  t.match(tampered.checks.find((c) => c.name === 'home'), { status: 'ok' });
});
