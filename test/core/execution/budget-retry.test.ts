// A spent budget is deterministic: a read-only call that spins past its time budget is attempted
// once, and the caller hears after about one budget (not three budgets plus the backoff).
import t from 'tap';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';
import { pluginDir } from '../registry/helpers.js';

const CLI = { kind: 'cli', user: 'test' };
const BUDGET_MS = 2000;

t.test('a spinning read-only plugin is stopped at its time budget and not retried', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const src = await pluginDir(t.testdir(), { id: 'spinner', wat: 'hostile', tools: [{ id: 'spin' }, { id: 'ok' }], requests: { time: { timeout_ms: BUDGET_MS } } });
  await gw.plugins.install(src, CLI);
  await gw.plugins.grant('spinner', { allRequested: true }, CLI);
  await gw.plugins.enable('spinner', CLI);
  const admin = await connect(gw);
  t.teardown(() => admin.conn.ws.close());

  // Load the module first (its 'ok' export answers at once), so the timing below is the call alone.
  await admin.conn.request('tool.invoke', { tool_id: 'spinner.ok', args: {} }, 20_000);
  const started = Date.now();
  const r = await admin.conn.request('tool.invoke', { tool_id: 'spinner.spin', args: {}, wait_ms: 30_000 }, 35_000);
  const heard = Date.now() - started;
  t.equal(r.ok, true, JSON.stringify(r.error));
  const res = r.result as { run_id: string; state: string; error: { code: string; wire: string } | null };
  t.equal(res.state, 'failed');
  t.match(res.error, { code: 'TYRUM_ERR_SANDBOX_TIMEOUT', wire: 'timeout' });

  const attempts = gw.store.execution.attempts(res.run_id);
  t.equal(attempts.length, 1, 'exactly one attempt is recorded in the store');
  t.match(attempts[0], { n: 1, state: 'failed' });
  t.match(JSON.parse(attempts[0]!.error ?? 'null'), { code: 'TYRUM_ERR_SANDBOX_TIMEOUT' });
  const step = gw.store.execution.steps(res.run_id)[0];
  t.equal(step?.max_attempts, 3, 'the step was allowed retries (read_only), yet none was made');
  t.equal(step?.attempts, 1);
  // Three attempts would take 3 x 2 s plus 0.25 s + 0.5 s of backoff; one takes about 2 s.
  t.ok(heard >= BUDGET_MS - 100, `the call ran to its budget (${heard} ms)`);
  t.ok(heard < 2 * BUDGET_MS + 1000, `the caller heard after about one budget (${heard} ms, guard ${2 * BUDGET_MS + 1000} ms)`);
});
