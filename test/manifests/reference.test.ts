// docs/manifest.md: the generated reference covers every field, and its example is a real manifest.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseManifest, RISK_IMPLIED_BY, impliedRisks } from '../../manifests/index.js';
import { EXAMPLE_MANIFEST, manifestFieldRows, manifestReferenceDoc } from '../../manifests/reference.js';
import { RISK_FLAGS, type PluginManifest } from '../../schemas/index.js';

t.test('the example manifest in the reference passes every manifest rule', async (t) => {
  const m = structuredClone(EXAMPLE_MANIFEST);
  m.wasm.sha256 = '0'.repeat(64);
  const parsed = parseManifest(Buffer.from(JSON.stringify(m)));
  t.equal(parsed.id, 'weather');
});

t.test('every manifest field has a row with a type and a description', async (t) => {
  const rows = manifestFieldRows();
  t.ok(rows.length >= 40, `${rows.length} rows`);
  for (const r of rows) {
    t.ok(r.type.length > 0, `${r.path}: type`);
    t.ok(r.description.length > 5, `${r.path}: description`);
  }
  for (const p of ['id', 'version', 'engines.tyrum', 'wasm.path', 'contributes.tools[].effect', 'requests.secrets[].destinations', 'config_schema']) {
    t.ok(rows.some((r) => r.path === p), `lists ${p}`);
  }
});

t.test('the committed docs/manifest.md is what the generator writes', async (t) => {
  t.equal(readFileSync(new URL('../../docs/manifest.md', import.meta.url), 'utf8'), manifestReferenceDoc());
});

t.test('the risk table agrees with impliedRisks', async (t) => {
  const empty = { contributes: { tools: [] } } as unknown as PluginManifest;
  const triggers: Record<string, Partial<PluginManifest>> = {
    network: { requests: { egress: [{ host: 'a.example' }] } },
    secrets: { requests: { secrets: [{ name: 'A', destinations: ['a.example'] }] } },
    storage: { requests: { kv: { quota_bytes: 1 } } },
    state_changing: { contributes: { tools: [{ effect: 'state_changing' }] } as unknown as PluginManifest['contributes'] },
  };
  for (const flag of RISK_FLAGS) {
    const trigger = triggers[flag];
    if (RISK_IMPLIED_BY[flag] === null) {
      t.notOk(trigger, `${flag} is never implied`);
      continue;
    }
    t.same(impliedRisks({ ...empty, ...trigger }), [flag], `${flag} is implied by ${RISK_IMPLIED_BY[flag]}`);
  }
});
