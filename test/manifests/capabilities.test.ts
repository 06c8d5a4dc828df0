import t from 'tap';
import { effectiveRights, grantAllRequested, impliedRisks, permissionDiff, DEFAULT_MEMORY_PAGES, DEFAULT_TIMEOUT_MS } from '../../manifests/capabilities.js';
import type { PluginManifest } from '../../schemas/index.js';

type Req = Pick<PluginManifest, 'requests' | 'risk'>;

t.test('effective rights are the intersection of request and grant; a grant never widens', async (t) => {
  const m: Req = {
    requests: {
      egress: [{ host: 'api.example.com', methods: ['GET', 'POST'] }],
      secrets: [{ name: 'TOKEN', destinations: ['api.example.com', 'alt.example.com'] }],
      kv: { quota_bytes: 1000 },
      memory: { max_pages: 512 },
      time: { timeout_ms: 20_000 },
    },
    risk: ['network', 'secrets', 'storage'],
  };
  t.same(effectiveRights(m, null), { egress: [], secrets: [], kv: null, memory: { max_pages: DEFAULT_MEMORY_PAGES }, time: { timeout_ms: DEFAULT_TIMEOUT_MS }, accepted_risks: [], missing_risks: ['network', 'secrets', 'storage'] }, 'no grant, nothing but defaults');
  const e = effectiveRights(m, {
    egress: [
      { host: 'api.example.com', methods: ['GET', 'DELETE'] },
      { host: 'evil.example.com', methods: ['GET'] },
    ],
    secrets: [{ name: 'TOKEN', destinations: ['alt.example.com', 'evil.example.com'] }, { name: 'OTHER' }],
    kv: { quota_bytes: 5000 },
    memory: { max_pages: 1024 },
    time: { timeout_ms: 1000 },
    accept_risks: ['network'],
  });
  t.same(e.egress, [{ host: 'api.example.com', port: 443, scheme: 'https', methods: ['GET'] }], 'only requested hosts and methods; DELETE and evil.example.com dropped');
  t.same(e.secrets, [{ name: 'TOKEN', destinations: ['alt.example.com'] }], 'destinations narrowed; an unrequested handle ignored');
  t.same(e.kv, { quota_bytes: 1000 }, 'the smaller quota');
  t.same(e.memory, { max_pages: 512 });
  t.same(e.time, { timeout_ms: 1000 });
  t.same(e.missing_risks, ['secrets', 'storage']);
});

t.test('a request for host "*" takes exactly the hosts the operator names, within the requested methods', async (t) => {
  const m: Req = { requests: { egress: [{ host: '*', methods: ['GET'] }], secrets: [{ name: 'API_TOKEN', destinations: ['*'] }] }, risk: ['network', 'secrets'] };
  t.same(effectiveRights(m, { accept_risks: ['network', 'secrets'] }).egress, [], 'no named host, no network');
  const e = effectiveRights(m, {
    egress: [{ host: 'api.github.com', methods: ['GET', 'POST'] }, { host: '127.0.0.1', scheme: 'http', port: 8080 }],
    secrets: [{ name: 'API_TOKEN', destinations: ['api.github.com'] }],
  });
  t.same(e.egress, [
    { host: 'api.github.com', port: 443, scheme: 'https', methods: ['GET'] },
    { host: '127.0.0.1', port: 8080, scheme: 'http', methods: ['GET'] },
  ]);
  t.same(e.secrets, [{ name: 'API_TOKEN', destinations: ['api.github.com'] }]);
  t.same(effectiveRights(m, { secrets: [{ name: 'API_TOKEN' }] }).secrets, [], 'a "*" secret with no named destination goes nowhere');
  const httpsOnly: Req = { requests: { egress: [{ host: '*', scheme: 'https' }] } };
  t.same(effectiveRights(httpsOnly, { egress: [{ host: 'a.example', scheme: 'http' }] }).egress, [], 'scheme restriction of the request holds');
  t.same(grantAllRequested(m), { accept_risks: ['network', 'secrets'] }, '--all-requested never grants "*"');
  t.same(permissionDiff({ requests: {} }, m).map((d) => d.detail)[0], 'hosts the operator names GET');
});

t.test('a grant may pin a requested secret host to an origin (http or another port); it cannot add a host', async (t) => {
  const m: Req = { requests: { secrets: [{ name: 'TOKEN', destinations: ['127.0.0.1', 'api.example.com'] }] } };
  const e = effectiveRights(m, { secrets: [{ name: 'TOKEN', destinations: ['http://127.0.0.1:8080', 'https://api.example.com:8443', 'http://evil.example.com'] }] });
  t.same(e.secrets, [{ name: 'TOKEN', destinations: ['http://127.0.0.1:8080', 'https://api.example.com:8443'] }], 'origins on requested hosts kept; another host dropped');
  t.same(effectiveRights(m, { secrets: [{ name: 'TOKEN' }] }).secrets, [{ name: 'TOKEN', destinations: ['127.0.0.1', 'api.example.com'] }], 'no grant destinations: the requested bare hosts (https, port 443)');
  const wild: Req = { requests: { secrets: [{ name: 'TOKEN', destinations: ['*'] }] } };
  t.same(effectiveRights(wild, { secrets: [{ name: 'TOKEN', destinations: ['http://127.0.0.1:8080'] }] }).secrets, [{ name: 'TOKEN', destinations: ['http://127.0.0.1:8080'] }], '"*": the granted origins');
});

t.test('implied risks follow requests and effects', async (t) => {
  t.same(impliedRisks({ requests: { egress: [{ host: '*' }], kv: { quota_bytes: 1 } }, contributes: { tools: [{ id: 'x', export: 'x', description: 'd', input_schema: {}, output_schema: {}, effect: 'state_changing' }] } }), ['network', 'storage', 'state_changing']);
});
