/**
 * doctor.run's whole-database checks run on a worker thread: the gateway keeps answering while a
 * check is in the middle of a large audit log, a worker that dies gives a coded error, and a
 * doctor closed mid-check stops its worker (so the home can be removed) with a coded error too.
 * Order of answers only; nothing here asserts on timing.
 */
import t from 'tap';
import { startTestGateway, removeHome, connect, TEST_STORE, type TestGateway } from '../../helpers/gateway.js';
import { gatewayDoctor, type DoctorReport } from '../../../core/doctor/checks.js';
import { homePaths, loadConfig } from '../../../core/config/index.js';
import type { HeavyCheckTestHooks } from '../../../core/doctor/offload.js';

const ENTRIES = 20_000;

/** Append `n` audit entries in batches of one transaction each, then sign the checkpoint over them. */
async function fillAudit(gw: TestGateway, n: number): Promise<void> {
  for (let done = 0; done < n; done += 1000) {
    gw.store.tx(() => {
      for (let i = done; i < Math.min(n, done + 1000); i++) gw.audit.appendInTx('test.filler', { kind: 'cli', user: 'test' }, { i, pad: 'x'.repeat(200) });
    });
  }
  await gw.audit.flush();
}

function doctorFor(gw: TestGateway, test?: HeavyCheckTestHooks) {
  return gatewayDoctor({ home: gw.home, paths: homePaths(gw.home), store: gw.store, storeSettings: loadConfig(gw.home).store, key: gw.key, plugins: () => gw.plugins.list(), before: () => gw.audit.flush(), ...(test ? { test } : {}) });
}

t.test('the gateway answers over WebSocket while a doctor check is in the middle of a large audit log', async (t) => {
  const gw = await startTestGateway();
  let held!: (release: () => void) => void;
  const holding = new Promise<() => void>((r) => (held = r));
  const doctor = doctorFor(gw, { holdAfterRows: ENTRIES / 2, onHold: (release) => held(release) });
  t.teardown(async () => {
    await doctor.close();
    await gw.close();
    removeHome(gw.home);
  });
  await fillAudit(gw, ENTRIES);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());

  const order: string[] = [];
  const report = doctor.run().then((r) => {
    order.push('doctor');
    return r;
  });
  // The worker is now paused half-way through the chain walk, with the check in flight: were the
  // walk on the event loop, nothing below could be answered until it ended.
  const release = await holding;
  const pong = await conn.request('ping', {});
  t.equal(pong.ok, true, 'ping answered mid-check');
  order.push('ping');
  const list = await conn.request('audit.list', { limit: 1 });
  t.equal(list.ok, true, 'a database read answered mid-check');
  order.push('audit.list');
  release();
  const r: DoctorReport = await report;
  t.same(order, ['ping', 'audit.list', 'doctor'], 'the gateway answered while the check ran, and the check then finished');
  t.equal(r.ok, true, JSON.stringify(r.checks));
  const audit = r.checks.find((c) => c.name === 'audit chain');
  t.match(audit, { status: 'ok', detail: /^\d+ entries verify; checkpoint at \d+ \(signed / });
  t.ok(Number(/^(\d+)/.exec(audit!.detail)![1]) >= ENTRIES, 'the worker walked the whole chain');
  t.match(r.checks.find((c) => c.name === 'database'), { status: 'ok', detail: TEST_STORE === 'postgres' ? /^PostgreSQL: .*schema=v\d+/ : /quick_check=ok schema=v\d+$/ });
});

t.test('a worker that dies gives a coded error, not a hang; the next call starts a fresh one', async (t) => {
  const gw = await startTestGateway();
  const doctor = doctorFor(gw, { crash: true });
  t.teardown(async () => {
    await doctor.close();
    await gw.close();
    removeHome(gw.home);
  });
  await t.rejects(doctor.run(), { code: 'TYRUM_ERR_INTERNAL', message: /worker thread ended \(exit code 70\)/ });
  await t.rejects(doctor.run(), { code: 'TYRUM_ERR_INTERNAL' }, 'a failed check is not cached as a report');
});

t.test('closing the doctor mid-check stops its worker with a coded error, and the home can then be removed', async (t) => {
  const gw = await startTestGateway();
  let held!: () => void;
  const holding = new Promise<void>((r) => (held = r));
  const doctor = doctorFor(gw, { holdAfterRows: 1, onHold: () => held() });
  await fillAudit(gw, 10);
  const running = doctor.run();
  await holding;
  await doctor.close();
  await t.rejects(running, { code: 'TYRUM_ERR_INVALID_STATE', message: /closing/ });
  await t.rejects(doctor.run(), { code: 'TYRUM_ERR_INVALID_STATE' }, 'no new check once closed');
  await gw.close();
  removeHome(gw.home);
});

t.test('doctor.run over WebSocket on a large audit log: the report is the same as before, and a ping sent with it is answered', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await fillAudit(gw, ENTRIES);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const [doctor, pong] = await Promise.all([conn.request('doctor.run', {}, 60_000), conn.request('ping', {})]);
  t.equal(pong.ok, true);
  t.equal(doctor.ok, true, JSON.stringify(doctor.error));
  const r = doctor.result as DoctorReport;
  t.same(r.checks.filter((c) => c.status !== 'ok'), []);
  t.match(r.checks.find((c) => c.name === 'audit chain')?.detail, new RegExp(`^${ENTRIES + 1}|^${ENTRIES}|^\\d+ entries verify`));
});

t.test('closing the gateway with a doctor.run in flight does not hang: the call ends with a coded error, a closed connection or its report', async (t) => {
  const gw = await startTestGateway();
  await fillAudit(gw, ENTRIES);
  const { conn } = await connect(gw);
  const doctor = conn.request('doctor.run', {}, 60_000);
  // Answered in order after doctor.run was received: the check is now under way (or done).
  t.equal((await conn.request('ping', {})).ok, true);
  await gw.close();
  const r = await doctor;
  if (r.closed === undefined && r.ok === false) t.match(r.error, { code: 'invalid_state', message: /closing/ });
  else t.pass(r.closed !== undefined ? 'the connection closed first' : 'the report was made before the close');
  conn.ws.close();
  removeHome(gw.home);
});
