import t from 'tap';
import type { Test } from 'tap';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startTestGateway, removeHome, type TestGateway } from '../../helpers/gateway.js';
import { runCli } from '../../helpers/cli.js';
import { pluginDir, installEnabled } from '../registry/helpers.js';
import { TyrumClient, TyrumNode, type CredentialStore } from '../../../sdk/index.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const PNG = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), Buffer.alloc(300_000, 7)]);
const REPORT = 'node report: all files written\n';

class MemCredentials implements CredentialStore {
  token: string | null = null;
  load(): string | null {
    return this.token;
  }
  save(x: string): void {
    this.token = x;
  }
  clear(): void {
    this.token = null;
  }
}

interface World {
  gw: TestGateway;
  client: TyrumClient;
  runId: string;
  events: Array<{ type: string; payload: Record<string, unknown> }>;
  base: string;
}

/** A gateway, an operator client, and a paired node whose sys.noop answers with two artifacts; one call made. */
async function world(t: Test): Promise<World> {
  const gw = await startTestGateway();
  const { token: enroll } = await gw.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 3600, createdBy: 'test' });
  let paired!: () => void;
  const pairedP = new Promise<void>((r) => (paired = r));
  const node = new TyrumNode({
    url: gw.url,
    deviceKey: generateKeyPairSync('ed25519').privateKey,
    enrollmentToken: enroll,
    credentials: new MemCredentials(),
    capabilities: [
      {
        id: 'sys.noop',
        version: '1',
        handler: async () => ({
          output: { ok: true },
          evidence: { note: 'two artifacts' },
          artifacts: [
            { media_type: 'image/png', name: 'screen.png', content_base64: PNG.toString('base64') },
            { media_type: 'text/plain; charset=utf-8', name: 'report.txt', text: REPORT },
          ],
        }),
      },
    ],
    device: { label: 'box' },
    onStatus: (s) => {
      if (s.state === 'connected' && s.with === 'node_token') paired();
    },
  });
  const client = new TyrumClient({ url: gw.url, token: gw.adminToken, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false });
  t.teardown(async () => {
    await node.stop();
    await client.close();
    await gw.close();
    removeHome(gw.home);
  });
  const events: World['events'] = [];
  client.on('event', (e: { type: string; payload: Record<string, unknown> }) => events.push(e));
  await client.connect();
  await node.start();
  const listed = (await client.request('pairing.list', { state: 'awaiting_human' })) as { pairings: Array<{ pairing_id: string }> };
  await client.request('pairing.approve', { pairing_id: listed.pairings[0]!.pairing_id, trust_level: 'local', capability_allowlist: [{ id: 'sys.noop' }], read_only: ['sys.noop'], node_name: 'box' });
  await pairedP;
  const r = (await client.request('tool.invoke', { tool_id: 'node.sys.noop@box', args: {}, wait_ms: 10_000 })) as { run_id: string; state: string };
  t.equal(r.state, 'succeeded', 'the node call succeeded');
  return { gw, client, runId: r.run_id, events, base: `http://127.0.0.1:${gw.port}` };
}

const get = (w: World, id: string, token: string | null, headers: Record<string, string> = {}) => fetch(`${w.base}/artifacts/${id}`, { headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers } });

t.test('a node answer carrying artifacts: stored, attached to the attempt, referenced from its evidence; listed, downloadable with an operator token, refused to a token without the scope', async (t) => {
  const w = await world(t);
  const pngId = `sha256:${sha(PNG)}`;
  const txtId = `sha256:${sha(REPORT)}`;

  const run = (await w.client.request('run.get', { run_id: w.runId })) as { steps: Array<{ result: unknown; attempts: Array<{ evidence: Record<string, unknown> }> }> };
  const evidence = run.steps[0]!.attempts[0]!.evidence;
  t.same(evidence.artifacts, [
    { artifact_id: pngId, size: PNG.length, media_type: 'image/png', name: 'screen.png' },
    { artifact_id: txtId, size: Buffer.byteLength(REPORT), media_type: 'text/plain; charset=utf-8', name: 'report.txt' },
  ]);
  t.match(evidence, { node: 'box', node_evidence: { note: 'two artifacts' } });
  t.notOk(JSON.stringify(run).includes(PNG.toString('base64').slice(0, 200)), 'the content is not in the run record');

  const list = (await w.client.request('artifact.list', { run_id: w.runId })) as { artifacts: Array<{ artifact: { artifact_id: string; download_path: string }; attachment: { step_idx: number; attempt: number } }> };
  t.same(list.artifacts.map((x) => [x.artifact.artifact_id, x.attachment.step_idx, x.attachment.attempt, x.artifact.download_path]), [
    [pngId, 0, 1, `/artifacts/${pngId}`],
    [txtId, 0, 1, `/artifacts/${txtId}`],
  ]);
  const one = (await w.client.request('artifact.get', { artifact_id: txtId })) as { artifact: { size: number }; attachments: Array<{ run_id: string }> };
  t.equal(one.artifact.size, Buffer.byteLength(REPORT));
  t.same(one.attachments.map((a) => a.run_id), [w.runId]);
  await t.rejects(w.client.request('artifact.list', { run_id: 'run_nope' }), { code: 'not_found' });
  await t.rejects(w.client.request('artifact.get', { artifact_id: `sha256:${'0'.repeat(64)}` }), { code: 'not_found' });

  // Durable events: created and attached, each twice, also in event.list.
  const listed = (await w.client.request('event.list', { after: 0, limit: 1000 })) as { events: Array<{ type: string; payload: Record<string, unknown> }> };
  const mine = listed.events.filter((e) => e.type.startsWith('artifact.'));
  t.same(mine.map((e) => e.type), ['artifact.created', 'artifact.attached', 'artifact.created', 'artifact.attached']);
  t.match(mine[1]!.payload, { artifact_id: pngId, run_id: w.runId, step_idx: 0, attempt: 1, kind: 'evidence', size: PNG.length });

  // The operator token downloads the bytes, streamed, with safe headers.
  const res = await get(w, pngId, w.gw.adminToken);
  t.equal(res.status, 200);
  t.same(Buffer.from(await res.arrayBuffer()), PNG, 'the exact bytes');
  t.equal(res.headers.get('content-type'), 'image/png');
  t.equal(res.headers.get('x-content-type-options'), 'nosniff');
  t.equal(res.headers.get('content-disposition'), 'attachment; filename="screen.png"');
  t.match(res.headers.get('content-security-policy'), /^sandbox/);
  t.equal(res.headers.get('etag'), `"${pngId}"`);
  t.equal(res.headers.get('content-length'), String(PNG.length));
  t.equal((await get(w, pngId, w.gw.adminToken, { 'if-none-match': `"${pngId}"` })).status, 304, 'a matching ETag gets 304');

  // Refusals.
  const writer = await w.gw.tokens.create({ scopes: ['operator.write'], roles: ['client'], createdBy: 'test' });
  const reader = await w.gw.tokens.create({ scopes: ['operator.read'], roles: ['client'], createdBy: 'test', label: 'another principal' });
  const noAuth = await get(w, pngId, null);
  t.equal(noAuth.status, 401, 'no token: 401');
  t.match(noAuth.headers.get('www-authenticate'), /^Bearer/);
  t.equal((await get(w, pngId, 'tyrum_0123456789abcdef_bogus')).status, 401, 'a bad token: 401');
  t.equal((await fetch(`${w.base}/artifacts/${pngId}?token=${w.gw.adminToken}`)).status, 401, 'a token in the URL is never read');
  const forbidden = await get(w, pngId, writer.token);
  t.equal(forbidden.status, 403, 'a token without operator.read: 403');
  t.notOk(Buffer.from(await forbidden.arrayBuffer()).includes(PNG.subarray(0, 8)), 'and no bytes');
  t.equal((await get(w, `sha256:${'0'.repeat(64)}`, writer.token)).status, 403, 'the same 403 for an unknown id: existence does not leak to it');
  t.equal((await get(w, pngId, reader.token)).status, 200, "another principal's operator.read token reads this run's evidence, as run.get shows it the run");
  t.equal((await get(w, `sha256:${'0'.repeat(64)}`, w.gw.adminToken)).status, 404, 'an unknown id: 404');
  t.equal((await get(w, 'not-an-id', w.gw.adminToken)).status, 404);
  // An artifact attached to no run is not evidence of anything operator.read may see.
  const loose = await w.gw.artifacts.put({ content: Buffer.from('unattached'), media_type: 'text/plain' }, 'test');
  t.equal((await get(w, loose.artifact_id, reader.token)).status, 404, 'unattached: 404 to operator.read (as unknown)');
  t.equal((await get(w, loose.artifact_id, w.gw.adminToken)).status, 200, 'unattached: readable by operator.admin');

  // The audit log records digests and sizes, never the content; a denial and each download are audited.
  await w.gw.audit.flush();
  const audit = w.gw.audit.list({ limit: 5000 });
  const created = audit.filter((e) => e.type === 'artifact.created');
  t.ok(created.some((e) => e.data.digest === sha(PNG) && e.data.size === PNG.length && e.data.media_type === 'image/png'));
  t.notOk(JSON.stringify(audit).includes(REPORT.trim()), 'the text content is not in the audit log');
  t.notOk(JSON.stringify(audit).includes(PNG.toString('base64').slice(0, 100)), 'nor the binary content');
  t.ok(audit.some((e) => e.type === 'authz.denied' && e.data.request_type === 'GET /artifacts'), 'the 403 is audited');
  t.ok(audit.some((e) => e.type === 'artifact.downloaded' && e.data.artifact_id === pngId));
  const verified = (await w.client.request('audit.verify', {})) as { ok: boolean };
  t.ok(verified.ok, 'the audit chain verifies');
  t.ok(w.events.some((e) => e.type === 'artifact.attached'), 'the live push carried artifact.attached');
});

t.test('tyrum artifact list and get: through the gateway, the download checked against the digest', async (t) => {
  const w = await world(t);
  const home = t.testdir();
  const flags = ['--home', home, '--url', w.gw.url, '--token', w.gw.adminToken];
  const listed = await runCli(['artifact', 'list', '--run', w.runId, ...flags]);
  t.equal(listed.code, 0, listed.err);
  t.match(listed.out, new RegExp(`sha256:${sha(PNG)}\tstep 0 attempt 1\timage/png\t${PNG.length}\tscreen.png`));
  const out = join(home, 'report.txt');
  const got = await runCli(['artifact', 'get', `sha256:${sha(REPORT)}`, '--out', out, ...flags]);
  t.equal(got.code, 0, got.err);
  t.match(got.out, /sha256 verified/);
  t.equal(readFileSync(out, 'utf8'), REPORT);
  const writer = await w.gw.tokens.create({ scopes: ['operator.write'], roles: ['client'], createdBy: 'test' });
  const refused = await runCli(['artifact', 'get', `sha256:${sha(REPORT)}`, '--out', join(home, 'no.txt'), '--home', home, '--url', w.gw.url, '--token', writer.token]);
  t.equal(refused.code, 1);
  t.match(refused.err, /TYRUM_ERR_FORBIDDEN/);
  t.notOk(existsSync(join(home, 'no.txt')) || existsSync(join(home, 'no.txt.part')), 'nothing written');
  const usage = await runCli(['artifact', 'get', 'x', ...flags]);
  t.equal(usage.code, 2, 'a missing --out is a usage error');
});

t.test('a WASM tool output with $artifacts: taken out before the output schema is checked, stored and attached; a bad entry fails the call and stores nothing', async (t) => {
  const gw = await startTestGateway();
  const client = new TyrumClient({ url: gw.url, token: gw.adminToken, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false });
  t.teardown(async () => {
    await client.close();
    await gw.close();
    removeHome(gw.home);
  });
  // raw-io's `echo` export returns its input: with JSON io, the tool's output is its arguments.
  const dir = await pluginDir(t.testdir(), { id: 'echoer', wat: 'raw-io', tools: [{ id: 'echo', output: { type: 'object', properties: { rows: { type: 'integer' } }, required: ['rows'], additionalProperties: false } }] });
  await installEnabled(gw.plugins, dir);
  await client.connect();
  const csv = 'id,title\n1,hello\n';
  const ok = (await client.request('tool.invoke', { tool_id: 'echoer.echo', args: { rows: 1, $artifacts: [{ media_type: 'text/csv', name: 'export.csv', text: csv }] } })) as { run_id: string; state: string; output: unknown };
  t.equal(ok.state, 'succeeded', 'the output passes its strict schema: $artifacts was taken out first');
  t.same(ok.output, { rows: 1 });
  const list = (await client.request('artifact.list', { run_id: ok.run_id })) as { artifacts: Array<{ artifact: { artifact_id: string; media_type: string; name: string } }> };
  t.same(list.artifacts.map((x) => [x.artifact.artifact_id, x.artifact.media_type, x.artifact.name]), [[`sha256:${sha(csv)}`, 'text/csv', 'export.csv']]);
  const res = await fetch(`http://127.0.0.1:${gw.port}/artifacts/sha256:${sha(csv)}`, { headers: { authorization: `Bearer ${gw.adminToken}` } });
  t.equal(await res.text(), csv);
  const bad = (await client.request('tool.invoke', { tool_id: 'echoer.echo', args: { rows: 2, $artifacts: [{ media_type: 'text', text: 'x' }] } })) as { state: string; error: { code: string } | null };
  t.equal(bad.state, 'failed');
  t.equal(bad.error?.code, 'TYRUM_ERR_ARTIFACT_MEDIA_TYPE');
  t.equal(gw.store.committed.artifacts.get(`sha256:${sha('x')}`), undefined, 'nothing stored');
});
