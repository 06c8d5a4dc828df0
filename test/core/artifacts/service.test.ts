import t from 'tap';
import type { Test } from 'tap';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ArtifactService, FsArtifactStore, artifactSink, extractToolArtifacts, normalizeMediaType, sanitizeName, contentDisposition, type ArtifactSink } from '../../../core/artifacts/index.js';
import { isTyrumError } from '../../../core/errors/index.js';
import type { ExecuteResult, StepCall } from '../../../core/execution/index.js';
import { World, makeKeys, openStack, flushAudit, type Stack } from '../execution/fixtures/world.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Env {
  dir: string;
  root: string;
  stack: Stack;
  svc: ArtifactService;
  world: World;
  events: Array<{ type: string; payload: Record<string, unknown> }>;
}

/** An engine on a real SQLite file whose `echo` tool answers what `answer` returns, with the artifact service wired in. */
function env(t: Test, o: { maxBytes?: number; maxTotalBytes?: number; answer?: (call: StepCall) => ExecuteResult; redact?: (v: unknown) => unknown } = {}): Env {
  const dir = t.testdir();
  const root = join(dir, 'artifacts');
  const world = new World(join(dir, 'ledger.jsonl'));
  if (o.answer) world.execute = async (call) => o.answer!(call);
  let svc: ArtifactService | null = null;
  const sink: ArtifactSink = { prepare: (x) => artifactSink(svc!).prepare(x), recordInTx: (...a) => artifactSink(svc!).recordInTx(...a) };
  const stack = openStack({ dbPath: join(dir, 'tyrum.db'), checkpointPath: join(dir, 'audit.checkpoint.json') }, makeKeys(), world, { artifacts: sink, ...(o.redact ? { redact: o.redact } : {}) });
  svc = new ArtifactService({ store: stack.store, events: stack.events, audit: stack.audit, blobs: new FsArtifactStore(root), maxBytes: o.maxBytes ?? 1024 * 1024, maxTotalBytes: o.maxTotalBytes ?? 10 * 1024 * 1024 });
  const events: Env['events'] = [];
  stack.events.onEvent((e) => events.push({ type: e.type, payload: e.payload }));
  stack.engine.start();
  t.teardown(() => stack.close());
  return { dir, root, stack, svc, world, events };
}

/** Every file under the artifact root that is not a directory. */
function files(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((p) => statSync(join(root, p)).isFile()).sort();
}

async function aRun(e: Env): Promise<string> {
  const { run } = await e.stack.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { n: 1 } }], created_by: 'tok_alice' });
  await e.stack.engine.wait(run.id, 5000);
  return run.id;
}

t.test('content addressing: the id is the sha256 of the bytes, identical content is stored once, and the blob is owner-only', async (t) => {
  const e = env(t);
  const a = await e.svc.put({ content: Buffer.from('hello evidence'), media_type: 'Text/Plain; Charset=utf-8', name: '../../etc/report.txt' }, 'tok_alice');
  t.equal(a.artifact_id, `sha256:${sha('hello evidence')}`);
  t.equal(a.media_type, 'text/plain; charset=utf-8', 'type, subtype and parameter names are lower-cased');
  t.equal(a.name, 'report.txt', 'only the last path component is kept');
  t.equal(a.size, 14);
  const b = await e.svc.put({ content: (async function* () { yield Buffer.from('hello '); yield Buffer.from('evidence'); })(), media_type: 'application/octet-stream' }, 'tok_bob');
  t.equal(b.artifact_id, a.artifact_id, 'the same bytes streamed in pieces get the same id');
  t.equal(b.media_type, 'text/plain; charset=utf-8', 'the first put of the content keeps its metadata');
  const blobs = files(e.root).filter((f) => f.startsWith('sha256'));
  t.same(blobs, [join('sha256', sha('hello evidence').slice(0, 2), sha('hello evidence'))], 'one blob, sharded by digest prefix');
  t.equal(statSync(join(e.root, blobs[0]!)).mode & 0o777, 0o600);
  t.equal(statSync(e.root).mode & 0o777, 0o700);
  t.equal((await e.svc.read(a.artifact_id)).toString(), 'hello evidence');
  t.equal(e.events.filter((x) => x.type === 'artifact.created').length, 1, 'one artifact.created for two puts of the same bytes');
});

t.test('over the size cap, over the quota, a bad media type: a coded error and nothing stored', async (t) => {
  const e = env(t, { maxBytes: 1000, maxTotalBytes: 1500 });
  const refuse = async (p: Promise<unknown>, code: string) => {
    try {
      await p;
      t.fail(`expected ${code}`);
    } catch (err) {
      t.ok(isTyrumError(err), String(err));
      t.equal((err as { code: string }).code, code);
    }
  };
  await refuse(e.svc.put({ content: Buffer.alloc(1001, 1), media_type: 'application/octet-stream' }, 'x'), 'TYRUM_ERR_ARTIFACT_TOO_LARGE');
  // A stream that goes over the cap is cut off while it is read.
  await refuse(e.svc.put({ content: (async function* () { for (let i = 0; i < 100; i++) yield Buffer.alloc(100, i); })(), media_type: 'application/octet-stream' }, 'x'), 'TYRUM_ERR_ARTIFACT_TOO_LARGE');
  for (const bad of ['text', 'text/', '/plain', 'text/plain/x', 'text/pl ain', 'text/plain; charset', 'text/plain\r\nx-evil: 1', '']) {
    await refuse(e.svc.put({ content: Buffer.from('x'), media_type: bad }, 'x'), 'TYRUM_ERR_ARTIFACT_MEDIA_TYPE');
  }
  t.same(files(e.root), [], 'no blob and no temporary file is left');
  await e.svc.put({ content: Buffer.alloc(1000, 7), media_type: 'application/octet-stream' }, 'x');
  await refuse(e.svc.put({ content: Buffer.alloc(600, 8), media_type: 'application/octet-stream' }, 'x'), 'TYRUM_ERR_ARTIFACT_QUOTA');
  await e.svc.put({ content: Buffer.alloc(1000, 7), media_type: 'application/octet-stream' }, 'x');
  t.pass('the same content again passes the quota: it adds nothing');
  t.equal(files(e.root).length, 1);
  t.equal(e.stack.store.committed.artifacts.totalBytes(), 1000);
});

t.test('a write cut off mid-stream leaves no file under a digest name and no temporary file', async (t) => {
  const e = env(t);
  const broken = async function* () {
    yield Buffer.alloc(4096, 1);
    throw new Error('source died');
  };
  await t.rejects(e.svc.put({ content: broken(), media_type: 'application/octet-stream' }, 'x'), /source died/);
  t.same(files(e.root), []);
  // A temporary file a crash left behind (the process died before rename) is never a blob, and the orphan sweep removes it once old.
  const store = new FsArtifactStore(e.root);
  await store.put(Buffer.from('ok'), { maxBytes: 10 });
  const { writeFileSync } = await import('node:fs');
  const part = join(e.root, 'tmp', 'dead.part');
  writeFileSync(part, 'partial');
  t.equal(await store.stat(sha('partial')), null, 'a partial write is not visible under its digest');
  const old = new Date(Date.now() - 3600_000);
  utimesSync(part, old, old);
  const dry = await e.svc.sweepOrphanBlobs({ dryRun: true });
  t.match(dry, { dry_run: true, temporary: 1, temporary_bytes: 7 });
  t.ok(existsSync(part), 'dry run removes nothing');
  await e.svc.sweepOrphanBlobs({});
  t.notOk(existsSync(part));
});

t.test('a tool output with $artifacts: stored, attached to the attempt, referenced from its evidence, removed from the output; events and audit carry the digest, never the content', async (t) => {
  const secretish = 'CONTENT-' + 'q'.repeat(40);
  const e = env(t, {
    answer: () => {
      const { output, artifacts } = extractToolArtifacts({ ok: true, $artifacts: [{ media_type: 'text/plain', name: 'log.txt', text: secretish }, { media_type: 'image/png', content_base64: Buffer.from([137, 80, 78, 71]).toString('base64') }] }, 'echo');
      return { output, artifacts };
    },
  });
  const runId = await aRun(e);
  const d = e.stack.engine.get(runId);
  t.equal(d.run.state, 'succeeded');
  t.same(d.steps[0]!.result, { ok: true }, 'the artifacts are not in the output');
  const ev = d.steps[0]!.attempts[0]!.evidence as { artifacts: Array<{ artifact_id: string; size: number; media_type: string; name: string | null }> };
  t.same(ev.artifacts, [
    { artifact_id: `sha256:${sha(secretish)}`, size: secretish.length, media_type: 'text/plain', name: 'log.txt' },
    { artifact_id: `sha256:${sha(Buffer.from([137, 80, 78, 71]))}`, size: 4, media_type: 'image/png', name: null },
  ]);
  const listed = e.svc.listForRun(runId);
  t.same(listed.map((x) => [x.artifact.artifact_id, x.attachment.step_idx, x.attachment.attempt, x.attachment.kind]), ev.artifacts.map((a) => [a.artifact_id, 0, 1, 'evidence']));
  t.same(e.events.filter((x) => x.type.startsWith('artifact.')).map((x) => x.type), ['artifact.created', 'artifact.attached', 'artifact.created', 'artifact.attached']);
  t.equal(e.events.find((x) => x.type === 'artifact.attached')!.payload.run_id, runId);
  t.equal((await e.svc.read(ev.artifacts[0]!.artifact_id)).toString(), secretish);
  await flushAudit(e.stack.audit);
  const entries = e.stack.audit.list({ limit: 1000 });
  const created = entries.filter((x) => x.type === 'artifact.created');
  t.equal(created.length, 2);
  t.match(created[0]!.data, { artifact_id: ev.artifacts[0]!.artifact_id, digest: sha(secretish), size: secretish.length, media_type: 'text/plain' });
  t.notOk(JSON.stringify(entries).includes(secretish), 'the content never reaches the audit log');
  t.notOk(readFileSync(join(e.dir, 'tyrum.db')).includes(Buffer.from(secretish)), 'nor the database');
});

t.test('artifacts a call cannot store fail the attempt with the coded error and attach nothing', async (t) => {
  const cases: Array<[string, ExecuteResult['artifacts'], string, ((v: unknown) => unknown)?]> = [
    ['too large', [{ media_type: 'text/plain', content: Buffer.alloc(2048) }], 'TYRUM_ERR_ARTIFACT_TOO_LARGE'],
    ['bad media type', [{ media_type: 'not a type', content: Buffer.from('x') }], 'TYRUM_ERR_ARTIFACT_MEDIA_TYPE'],
    ['a secret value in the bytes', [{ media_type: 'text/plain', content: Buffer.from('token=SEKRET-123456 end') }], 'TYRUM_ERR_ARTIFACT_INVALID', (v) => (typeof v === 'string' ? v.replaceAll('SEKRET-123456', '[redacted]') : v)],
  ];
  for (const [what, artifacts, code, redact] of cases) {
    const e = env(t, { maxBytes: 1024, answer: () => ({ output: { ok: true }, artifacts }), ...(redact ? { redact } : {}) });
    const runId = await aRun(e);
    const d = e.stack.engine.get(runId);
    t.equal(d.run.state, 'failed', what);
    t.equal(d.run.error?.code, code, what);
    t.same(e.svc.listForRun(runId), [], `${what}: nothing attached`);
    t.same(files(e.root).filter((f) => f.startsWith('sha256')), [], `${what}: no blob`);
  }
  t.throws(() => extractToolArtifacts({ $artifacts: [{ media_type: 'text/plain', content_base64: 'not base64!' }] }, 'x'), { code: 'TYRUM_ERR_ARTIFACT_INVALID' });
  t.throws(() => extractToolArtifacts({ $artifacts: [{ media_type: 'text/plain', text: 'a', content_base64: 'YQ==' }] }, 'x'), { code: 'TYRUM_ERR_ARTIFACT_INVALID' });
  t.throws(() => extractToolArtifacts({ $artifacts: 'x' }, 'x'), { code: 'TYRUM_ERR_ARTIFACT_INVALID' });
  t.same(extractToolArtifacts({ a: 1 }, 'x'), { output: { a: 1 }, artifacts: [] }, 'an output without $artifacts is untouched');
});

t.test('the playbook API: putAndAttach stores and attaches in one commit; attach is idempotent; an unknown run is not_found', async (t) => {
  const e = env(t);
  const runId = await aRun(e);
  const r = await e.svc.putAndAttach({ content: Buffer.from('step output'), media_type: 'application/json', name: 'out.json' }, { run_id: runId, step_idx: 0, by: 'playbook:pb_1' });
  t.match(r.attachment, { run_id: runId, step_idx: 0, attempt: null, kind: 'evidence', name: 'out.json', attached_by: 'playbook:pb_1' });
  await e.svc.attach(r.artifact.artifact_id, { run_id: runId, step_idx: 0, by: 'playbook:pb_1' });
  t.equal(e.svc.listForRun(runId).length, 1, 'attaching the same artifact to the same step again adds nothing');
  await t.rejects(e.svc.putAndAttach({ content: Buffer.from('x'), media_type: 'text/plain' }, { run_id: 'run_nope', by: 'x' }), { code: 'TYRUM_ERR_NOT_FOUND' });
  t.ok(e.svc.readableBy(r.artifact.artifact_id, ['operator.read']), 'attached: operator.read may read it');
  t.notOk(e.svc.readableBy(r.artifact.artifact_id, ['operator.write']), 'without operator.read: no');
  const loose = await e.svc.put({ content: Buffer.from('loose'), media_type: 'text/plain' }, 'x');
  t.notOk(e.svc.readableBy(loose.artifact_id, ['operator.read']), 'attached to no run: not for operator.read');
  t.ok(e.svc.readableBy(loose.artifact_id, ['operator.admin']), 'but for operator.admin');
  t.notOk(e.svc.readableBy(`sha256:${'0'.repeat(64)}`, ['operator.admin']), 'unknown: no');
});

t.test('retention: unattached and expired artifacts go in bounded batches, dry runs count without removing, orphan blobs are found', async (t) => {
  let now = Date.now();
  const e = env(t);
  (e.svc as unknown as { now: () => number }).now = () => now;
  const runId = await aRun(e);
  const loose = [];
  for (let i = 0; i < 3; i++) loose.push(await e.svc.put({ content: Buffer.from(`loose ${i}`), media_type: 'text/plain' }, 'x'));
  const kept = await e.svc.putAndAttach({ content: Buffer.from('attached'), media_type: 'text/plain' }, { run_id: runId, by: 'x' });
  now += 3600_000;
  const dry = await e.svc.sweepUnattached({ dryRun: true, limit: 2, before: now });
  t.match(dry, { dry_run: true, artifacts: 2, bytes: 14, more: true });
  t.equal(e.stack.store.committed.artifacts.unattached(now, 10).length, 3, 'a dry run removes nothing');
  const first = await e.svc.sweepUnattached({ limit: 2, before: now });
  t.match(first, { dry_run: false, artifacts: 2, more: true });
  const second = await e.svc.sweepUnattached({ limit: 2, before: now });
  t.match(second, { artifacts: 1, more: false });
  for (const a of loose) t.notOk(existsSync(join(e.root, 'sha256', a.artifact_id.slice(7, 9), a.artifact_id.slice(7))), 'its blob is gone');
  t.equal((await e.svc.read(kept.artifact.artifact_id)).toString(), 'attached', 'an attached artifact stays');
  const expired = await e.svc.sweepOlderThan({ before: now, dryRun: true });
  t.match(expired, { artifacts: 1, bytes: 8 });
  await e.svc.sweepOlderThan({ before: now });
  t.same(e.svc.listForRun(runId), [], 'its attachments went with it');
  // A blob without a row (a crash between the write and the commit).
  const orphan = await e.svc.store({ content: Buffer.from('never committed'), media_type: 'text/plain' });
  const p = join(e.root, 'sha256', orphan.artifact_id.slice(7, 9), orphan.artifact_id.slice(7));
  (e.svc as unknown as { now: () => number }).now = Date.now;
  t.match(await e.svc.sweepOrphanBlobs({ dryRun: true }), { blobs: 0 }, 'a fresh blob is within the grace period (a put may be in flight)');
  const old = new Date(Date.now() - 3600_000);
  utimesSync(p, old, old);
  t.match(await e.svc.sweepOrphanBlobs({ dryRun: true }), { blobs: 1, bytes: 15 });
  t.ok(existsSync(p));
  t.match(await e.svc.sweepOrphanBlobs({}), { blobs: 1 });
  t.notOk(existsSync(p));
  await flushAudit(e.stack.audit);
  t.equal(e.stack.audit.list({ limit: 1000 }).filter((x) => x.type === 'artifact.deleted').length, 4, 'each removal is audited');
});

t.test('names and media types are reduced to what is safe in a header', async (t) => {
  t.equal(normalizeMediaType('application/vnd.api+json; q="a b"'), 'application/vnd.api+json; q="a b"');
  t.equal(sanitizeName('C:\\Users\\x\\evil"name\n.txt'), 'evil_name_.txt');
  t.equal(sanitizeName('..'), '__');
  t.equal(sanitizeName('/'), null);
  t.equal(sanitizeName(undefined), null);
  t.equal(Buffer.byteLength(sanitizeName('é'.repeat(300))!), 254);
  t.equal(contentDisposition('report.txt', 'x'), 'attachment; filename="report.txt"');
  t.equal(contentDisposition('résumé.pdf', 'x'), `attachment; filename="r_sum_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`);
  t.equal(contentDisposition(null, 'abc'), 'attachment; filename="abc"');
});
