import t from 'tap';
import { startTestGateway, removeHome } from '../../helpers/gateway.js';
import { verifyAudit, listAudit } from '../../../core/audit/index.js';
import { runIds, seedRun } from './fixtures.js';

t.test('the running gateway has the sweeper wired in: a sweep removes expired runs, close stops it, the audit log verifies', async (t) => {
  const gw = await startTestGateway({ config: { retention: { runs_days: 1, events_days: 1, sweep_interval_ms: 60_000 } } });
  t.teardown(() => removeHome(gw.home));
  t.same(gw.sweeper.names(), ['runs', 'schedule_fires', 'events', 'conversations']);
  // fixtures date rows from a fixed instant; with a cutoff of one day before now these are long expired
  seedRun(gw.store, { id: 'ancient', state: 'succeeded', createdDaysAgo: 400 });
  seedRun(gw.store, { id: 'ancient-paused', state: 'paused', createdDaysAgo: 400 });
  const r = await gw.sweeper.sweep();
  t.equal(r.categories.find((c) => c.name === 'runs')!.detail.runs, 1);
  t.same(runIds(gw.home), ['ancient-paused']);
  t.equal(listAudit(gw.store, { type: 'retention.swept' }).length, 1);
  await gw.close();
  await gw.store.whenClosed();
  const { openHomeCore } = await import('../../../core/home.js');
  const core = openHomeCore(gw.home, {}, { tamperedAudit: 'inspect' });
  try {
    const v = verifyAudit({ store: core.store, verifier: core.key, checkpointPath: core.paths.auditCheckpoint });
    t.equal(v.ok, true, v.reason ?? 'verifies');
  } finally {
    await core.close();
  }
});
