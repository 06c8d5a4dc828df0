// examples/telegram-local: the README's offline block, as real processes. fake-cloud.mjs (the
// Telegram Bot API and a scripted Chat Completions server, on free ports), the built CLI
// (bin/tyrum.js) configuring a temporary home, and `tyrum start` on a free port. A note asked for
// over "Telegram" waits for an approval, is saved once approved, and one reply naming it is
// delivered; the same update again starts nothing; an unknown sender is sent a pairing code.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/tyrum.js');
const FAKE = join(ROOT, 'examples/telegram-local/fake-cloud.mjs');
const BOT_TOKEN = '123456:local-fake-token';

interface Done {
  code: number | null;
  out: string;
  err: string;
}

/** Runs `node ARGS` from the repository root to its end, with `input` on stdin. */
function run(args: string[], env: NodeJS.ProcessEnv, input = ''): Promise<Done> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err }));
    child.stdin.end(input);
  });
}

/** A long-running process whose output is collected as it comes. */
function background(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

async function until<T>(what: string, pick: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('telegram-local: the README block, offline: approval, one reply, dedupe, pairing code, everything stopped', async (t) => {
  if (!existsSync(join(ROOT, 'dist/core')) || !existsSync(join(ROOT, 'plugins/telegram/build/plugin.wasm')) || !existsSync(join(ROOT, 'plugins/notes/build/plugin.wasm'))) {
    t.fail('the build output is missing: run npm run build first');
    return;
  }
  const demo = mkdtempSync(join(tmpdir(), 'tyrum-telegram-local-'));
  const env: NodeJS.ProcessEnv = { ...process.env, TYRUM_HOME: join(demo, 'home'), TYRUM_TOKEN: '' };
  const started: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of started) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
    rmSync(demo, { recursive: true, force: true });
  });
  const tyrum = async (args: string[], input = ''): Promise<Done> => {
    const r = await run([BIN, ...args], env, input);
    t.equal(r.code, 0, `tyrum ${args.join(' ')}: ${r.err}`);
    return r;
  };

  // The fake cloud, on free ports (the README uses the defaults, 18081 and 18082).
  const cloud = background([FAKE, '--telegram-port', '0', '--model-port', '0', '--bot-token', BOT_TOKEN], env);
  started.push(cloud.child);
  const [, telegramUrl, modelUrl] = await until('the fake cloud to print its URLs', () => {
    if (cloud.child.exitCode !== null) throw new Error(`fake-cloud exited: ${cloud.err()}`);
    return /fake Telegram Bot API: (http:\/\/127\.0\.0\.1:\d+)[\s\S]*fake model \(Chat Completions\): (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(cloud.out());
  });
  const modelCalls = () => cloud.out().split('\n').filter((l) => l.startsWith('[model] '));
  const delivered = (chat: string) => cloud.out().split('\n').filter((l) => l.startsWith(`[telegram → chat ${chat}] `));

  // Configure the home as the README does.
  await tyrum(['plugin', 'install', 'plugins/notes/build']);
  await tyrum(['plugin', 'grant', 'notes', '--all-requested', '--accept-risk', 'state_changing,storage']);
  await tyrum(['plugin', 'enable', 'notes']);
  await tyrum(['plugin', 'install', 'plugins/telegram/build']);
  await tyrum(['plugin', 'grant', 'telegram', '--all-requested']);
  await tyrum(['plugin', 'enable', 'telegram']);
  await tyrum(['secret', 'set', 'TG_TOKEN', '--destinations', telegramUrl!], BOT_TOKEN);
  const secretFile = join(demo, 'webhook-secret');
  const webhookSecret = randomBytes(32).toString('hex');
  writeFileSync(secretFile, webhookSecret);
  await tyrum(['secret', 'set', 'TG_WEBHOOK', '--local-only'], webhookSecret);
  await tyrum(['backend', 'set', '--base-url', modelUrl!, '--model', 'fake']);
  await tyrum(['channel', 'add', 'telegram', 'bot', '--verify-secret', 'TG_WEBHOOK', '--credential-secret', 'TG_TOKEN', '--api-base', telegramUrl!, '--allow', '42']);

  // The gateway, as a real process on a free port.
  const gateway = background([BIN, 'start', '--port', '0'], env);
  started.push(gateway.child);
  const port = Number(
    (
      await until('the gateway to listen', () => {
        if (gateway.child.exitCode !== null) throw new Error(`the gateway exited: ${gateway.err()}`);
        return /listening on ws:\/\/127\.0\.0\.1:(\d+)\/ws/.exec(gateway.err());
      })
    )[1],
  );
  const fake = (args: string[]) => run([FAKE, ...args], env);
  const send = (args: string[]) => fake(['send', '--gateway', `http://127.0.0.1:${port}`, '--secret-file', secretFile, ...args]);

  // "note: buy milk" from the allowed sender 42: the model asks for notes.add_note, which waits.
  const first = await send(['--chat', '42', '--text', 'note: buy milk']);
  t.equal(first.code, 0, first.err);
  t.match(first.out, /^update 1001 from 42 in chat 42 → HTTP 200/);
  type Approval = { id: string; tool_id: string; args: unknown };
  const approval = await until('the approval the turn waits for', async () => {
    const r = await run([BIN, 'approvals', 'list', '--json'], env);
    return (JSON.parse(r.out) as { approvals: Approval[] }).approvals[0];
  });
  t.match(approval, { tool_id: 'notes.add_note', args: { title: 'Buy milk', body: 'buy milk' } }, 'the tool call the model proposed waits for an approval');
  await new Promise((r) => setTimeout(r, 500));
  t.same(delivered('42'), [], 'no reply while the turn waits');
  t.equal(modelCalls().length, 1);

  await tyrum(['approvals', 'approve', approval.id]);
  const sent42 = await fake(['sent', '--telegram', telegramUrl!, '--chat', '42', '--wait', '1']);
  t.equal(sent42.code, 0, sent42.err);
  t.match(sent42.out, /^\[telegram → chat 42\] Done: I saved the note "Buy milk" \(n1\)\.\n$/, 'the reply names the saved note');

  // Telegram redelivers the same update: no second turn.
  const again = await send(['--resend']);
  t.equal(again.code, 0, again.err);
  t.match(again.out, /^update 1001 \(again\) from 42 in chat 42 → HTTP 200/);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(modelCalls().length, 2, 'two model calls in all: the tool call, then the answer');
  t.same(JSON.parse((await run([BIN, 'approvals', 'list', '--json'], env)).out), { approvals: [] }, 'no new approval');
  t.equal(delivered('42').length, 1, 'one reply delivered');

  // An unknown sender gets a pairing code, and no turn runs.
  const stranger = await send(['--chat', '77', '--name', 'Eve', '--text', 'hi']);
  t.equal(stranger.code, 0, stranger.err);
  const sent77 = await fake(['sent', '--telegram', telegramUrl!, '--chat', '77', '--wait', '1']);
  t.equal(sent77.code, 0, sent77.err);
  const code = /Your pairing code is ([A-Z0-9]{4}-[A-Z0-9]{4})\./.exec(sent77.out)?.[1];
  t.ok(code, `a pairing code was delivered: ${sent77.out}`);
  const senders = JSON.parse((await tyrum(['channel', 'senders', 'telegram/bot', '--json'])).out) as { senders: unknown[] };
  t.match(senders.senders, [{ sender_id: '42', state: 'allowed' }, { sender_id: '77', state: 'pending', name: 'Eve', code }]);
  t.equal(modelCalls().length, 2, 'the stranger started no turn');

  t.match((await tyrum(['audit', 'verify'])).out, /^audit chain ok/);

  // Stop everything by pid.
  for (const p of [gateway, cloud]) process.kill(p.child.pid!, 'SIGTERM');
  t.equal(await gateway.exited, 0, 'the gateway stopped cleanly');
  t.equal(await cloud.exited, 0, 'the fake cloud stopped cleanly');
  t.notOk(alive(gateway.child.pid!), 'no gateway process left');
  t.notOk(alive(cloud.child.pid!), 'no fake-cloud process left');
});
