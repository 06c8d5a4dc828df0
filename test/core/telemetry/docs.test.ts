import t from 'tap';
import { readFileSync } from 'node:fs';
import { GatewayMetrics, CALL_OUTCOMES, BUDGET_KINDS } from '../../../core/telemetry/index.js';

const DOC = readFileSync(new URL('../../../docs/observability.md', import.meta.url), 'utf8');

t.test('docs/observability.md lists exactly the tyrum_* metrics the gateway exports, with their types', async (t) => {
  const m = new GatewayMetrics();
  t.teardown(() => m.close());
  const exported = new Map((await m.registry.getMetricsAsJSON()).map((x) => [x.name, String(x.type)]));
  const rows = new Map([...DOC.matchAll(/^\| `(tyrum_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)].map((r) => [r[1]!, r[2]!]));
  const ours = [...exported.keys()].filter((n) => n.startsWith('tyrum_')).sort();
  t.same([...rows.keys()].sort(), ours, 'the same names, documented once each');
  for (const [name, type] of rows) t.equal(type, exported.get(name), `${name} is a ${type}`);
  t.ok(ours.length >= 15, `the table is not empty (${ours.length})`);
});

t.test('docs/observability.md names every process metric the registry exports', async (t) => {
  const m = new GatewayMetrics();
  t.teardown(() => m.close());
  const others = m.names().filter((n) => !n.startsWith('tyrum_'));
  t.ok(others.length > 0, 'prom-client default metrics are registered');
  for (const n of others) t.match(DOC, `\`${n}\``, n);
});

t.test('docs/observability.md explains every outcome and budget kind label value', async (t) => {
  for (const o of CALL_OUTCOMES) t.match(DOC, `\`${o}\``, `outcome ${o}`);
  for (const k of BUDGET_KINDS) t.match(DOC, `\`${k}\``, `kind ${k}`);
});
