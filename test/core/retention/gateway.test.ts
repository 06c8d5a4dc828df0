import t from 'tap';
import { startTestGateway, removeHome } from '../../helpers/gateway.js';
import { verifyAudit, listAudit } from '../../../core/audit/index.js';
import { runIds, seedRun } from './fixtures.js';

t.test('the running gateway has the sweeper wired in: a sweep removes expired runs, close stops it, the audit log verifies', async (t) => {
  const gw = await startTestGateway({ config: { retention: { runs_days: 1, events_days: 1, sweep_interval_ms: 60_000 } } });
  t.teardown(() => removeHome(gw.home));
  t.same(gw.sweeper.names(), ['runs', 'schedule_fires', 'events', 'conversations', 'workflows', 'artifacts']);
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

t.test('finished workflows and old or unattached artifacts go; a paused workflow and the runs of its steps stay', async (t) => {
  const { existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { connect } = await import('../../helpers/gateway.js');
  const { createSweeper } = await import('../../../core/retention/index.js');
  const gw = await startTestGateway({ config: { retention: { runs_days: 1, events_days: 1, artifacts_days: 1, sweep_interval_ms: null } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(new URL('../../../plugins/text-utils/build', import.meta.url).pathname, { kind: 'cli', user: 'test' });
  await gw.plugins.grant('text-utils', { allRequested: true }, { kind: 'cli', user: 'test' });
  await gw.plugins.enable('text-utils', { kind: 'cli', user: 'test' });
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const playbook = { name: 'p', version: '1', steps: [{ id: 'a', tool: 'text-utils.word_count', args: { text: 'x y' } }, { id: 'b', approval: { message: 'ok?' } }] };
  const start = async () => ((await conn.request('workflow.start', { playbook }, 30_000)).result as { workflow: { workflow_id: string; resume_token: string; steps: Array<{ run_id: string | null }> } }).workflow;
  const done = await start();
  await conn.request('workflow.resume', { token: done.resume_token }, 30_000);
  const paused = await start();
  const art = await gw.artifacts.put({ content: Buffer.from('evidence'), media_type: 'text/plain', name: 'e.txt' }, 'test');
  const blob = join(gw.home, 'artifacts', 'sha256', art.artifact_id.slice(7, 9), art.artifact_id.slice(7));
  t.ok(existsSync(blob), 'the blob is on disk');
  // Written an hour ago (a blob touched in the last minute is kept: a put of the same bytes may be in flight).
  const { utimesSync } = await import('node:fs');
  utimesSync(blob, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));

  // Forty days later.
  const later = Date.now() + 40 * 86_400_000;
  const sweeper = createSweeper({ store: gw.store, audit: gw.audit, retention: gw.config.retention, now: () => later, deleteArtifactBlob: (id) => gw.artifacts.deleteBlob(id) });
  const dry = await sweeper.sweep({ dryRun: true });
  t.equal(gw.store.workflows.get(done.workflow_id)?.state, 'succeeded', 'a dry run removes nothing');
  const report = await sweeper.sweep();
  t.same(report.categories.map((c) => [c.name, c.rows]), dry.categories.map((c) => [c.name, c.rows]), 'the dry run reported what the sweep removed');
  t.equal(gw.store.workflows.get(done.workflow_id), undefined, 'the finished workflow went');
  t.equal(gw.store.workflows.get(paused.workflow_id)?.state, 'paused', 'the paused workflow stays');
  t.ok(gw.engine.get(paused.steps[0]!.run_id!), 'the finished run of a paused workflow\'s step stays');
  t.equal(gw.store.artifacts.get(art.artifact_id), undefined, 'the artifact row went');
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(existsSync(blob), 'and its blob after the commit');
  // The paused workflow still resumes.
  const r = await conn.request('workflow.resume', { token: paused.resume_token }, 30_000);
  t.equal((r.result as { workflow: { state: string } }).workflow.state, 'succeeded');
});
