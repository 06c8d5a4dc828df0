/**
 * Sustained load (TESTPLAN I2): many tool calls through a read-only plugin tool
 * (`text-utils.word_count`) from many concurrent WebSocket connections of a few tokens, while
 * another process commits to the same database (as the CLI does), then checks that
 *
 * - every call was answered exactly once (a second response to a request id reaches the SDK client
 *   as a warning, which is counted),
 * - every answer is a succeeded run, and the store holds exactly one run per call, each with one
 *   succeeded step and one succeeded attempt (nothing lost, nothing duplicated),
 * - no caller ever saw a database busy error (`SQLITE_BUSY`, "database is locked"),
 * - answers kept coming (the longest stretch without one is reported).
 *
 * `soak()` is what test/core/gateway/load.test.ts runs (about 2,000 calls) and what `npm run soak`
 * runs with 50,000 (`SOAK_CALLS`, `SOAK_CONNECTIONS`, `SOAK_INFLIGHT`, `SOAK_TOKENS` override). It
 * starts its own gateway in a temporary home and stops it, and the writer process, when done.
 *
 * `node --import tsx bench/soak.ts --writer HOME` is the writer: it opens HOME as the CLI does and
 * commits a token every 50 ms until its stdin closes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openHome, startGateway, type RunningGateway } from '../core/runtime.js';
import { TyrumClient, TyrumRemoteError, type JsonObject } from '../sdk/index.js';

const TEXT_UTILS = fileURLToPath(new URL('../plugins/text-utils/build/', import.meta.url));
const TOOL_ID = 'text-utils.word_count';
const BUSY_RE = /SQLITE_BUSY|database is locked/i;
/** A call's wait_ms is 30 s; an answer later than this counts as none (and, if it comes, as a duplicate). */
const CALL_TIMEOUT_MS = 120_000;

export interface SoakOptions {
  /** Tool calls in all. */
  calls: number;
  /** WebSocket connections, each with its own device key. */
  connections: number;
  /** Calls each connection keeps in flight. */
  inflight: number;
  /** Tokens the connections are spread over (each token's in-flight budget is 64 by default). */
  tokens: number;
  /** Run a second process that commits to the database throughout (default true). */
  writer?: boolean;
  /** Gives up (and reports what it has) after this long. */
  deadlineMs?: number;
  /** Called about every 250 ms with the number of calls answered so far. */
  onProgress?(answered: number, elapsedMs: number): void;
}

export interface SoakReport {
  calls: number;
  /** Calls whose response arrived (once or more). */
  answered: number;
  /** Calls answered ok with a succeeded run. */
  succeeded: number;
  /** Responses beyond the first for one request id. */
  duplicateAnswers: number;
  /** Calls never answered before the deadline. */
  unanswered: number;
  /** Error answers by wire code (or run state). */
  failures: Record<string, number>;
  /** Answers (errors, run errors) that mention a database busy error. */
  busySurfaced: number;
  /** Runs of the tool in the store. */
  runs: number;
  /** Runs not succeeded, or without exactly one succeeded step with one succeeded attempt. */
  badRuns: number;
  /** Answers naming a run id that another answer also named. */
  duplicateRunIds: number;
  /** Answered run ids missing from the store, and stored runs no answer named. */
  unmatchedRuns: number;
  /** Commits the writer process made meanwhile (and its errors). */
  writerCommits: number;
  writerErrors: string[];
  wallMs: number;
  callsPerSecond: number;
  /** The longest stretch without a new answer. */
  maxStallMs: number;
}

/** An answer as the soak counts it: the result, or the wire error code and text. */
type Answer = { ok: true; result: JsonObject } | { ok: false; code: string; text: string };

/**
 * One SDK client (its handshake, PROTOCOL.md) whose requests resolve to an `Answer`, or null when no
 * answer came (closed, timed out). A second response to one request id is a warning the client
 * ignores; `onDuplicate` counts it.
 */
async function open(url: string, token: string, onDuplicate: () => void): Promise<{ client: TyrumClient; call(type: string, payload: JsonObject): Promise<Answer | null> }> {
  const client = new TyrumClient({ url, token, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false, heartbeatMs: 0 });
  client.on('warning', (w) => {
    if (/^response to unknown request_id/.test(w.message)) onDuplicate();
  });
  await client.connect();
  const call = (type: string, payload: JsonObject) =>
    client.request(type, payload, { timeoutMs: CALL_TIMEOUT_MS }).then(
      (result): Answer => ({ ok: true, result }),
      (e: unknown): Answer | null => (e instanceof TyrumRemoteError ? { ok: false, code: e.code, text: e.message } : null),
    );
  return { client, call };
}

/** Starts the writer process on `home`; resolves its commit count and errors when stopped. */
function startWriter(home: string): { stop(): Promise<{ commits: number; errors: string[] }> } {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--writer', home], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async stop() {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      const last = out.trim().split('\n').at(-1) ?? '';
      try {
        const r = JSON.parse(last) as { commits: number; errors: string[] };
        return { commits: r.commits, errors: [...r.errors, ...(err.trim() ? [err.trim().slice(0, 500)] : [])] };
      } catch {
        return { commits: 0, errors: [`writer gave no report: ${(err || out).slice(0, 500)}`] };
      }
    },
  };
}

/** The writer: commits to `home`'s database every 50 ms (as the CLI would) until stdin closes. */
async function writer(home: string): Promise<void> {
  const svc = openHome(home);
  let commits = 0;
  const errors: string[] = [];
  let stopped = false;
  process.stdin.on('end', () => (stopped = true));
  process.stdin.resume();
  while (!stopped) {
    try {
      await svc.tokens.create({ scopes: ['operator.read'], label: `soak writer ${commits}`, createdBy: 'soak' });
      commits++;
    } catch (e) {
      if (errors.length < 20) errors.push(e instanceof Error ? e.message : String(e));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await svc.close();
  process.stdout.write(JSON.stringify({ commits, errors }) + '\n');
}

/** Runs the load against a fresh gateway and checks the store; never throws for a failed check (the report says). */
export async function soak(opts: SoakOptions): Promise<SoakReport> {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-soak-'));
  let gw: RunningGateway | null = null;
  let writerProc: ReturnType<typeof startWriter> | null = null;
  const conns: Array<Awaited<ReturnType<typeof open>>> = [];
  try {
    gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
    const CLI = { kind: 'cli', user: 'soak' };
    await gw.plugins.install(TEXT_UTILS, CLI);
    await gw.plugins.grant('text-utils', { allRequested: true }, CLI);
    await gw.plugins.enable('text-utils', CLI);
    const tokens: string[] = [];
    for (let i = 0; i < opts.tokens; i++) tokens.push((await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], label: `soak ${i}`, createdBy: 'soak' })).token);
    let duplicateAnswers = 0;
    for (let i = 0; i < opts.connections; i++) conns.push(await open(gw.url, tokens[i % tokens.length]!, () => duplicateAnswers++));

    if (opts.writer !== false) writerProc = startWriter(home);
    const started = performance.now();
    const deadline = started + (opts.deadlineMs ?? Infinity);
    const failures: Record<string, number> = {};
    const runIds: string[] = [];
    let answered = 0;
    let succeeded = 0;
    let busySurfaced = 0;
    let next = 0;
    let lastAnswerAt = started;
    let maxStallMs = 0;
    const fail = (k: string) => (failures[k] = (failures[k] ?? 0) + 1);
    const progress = setInterval(() => {
      maxStallMs = Math.max(maxStallMs, performance.now() - lastAnswerAt);
      opts.onProgress?.(answered, performance.now() - started);
    }, 250);
    const worker = async (c: (typeof conns)[number]) => {
      while (next < opts.calls && performance.now() < deadline) {
        const i = next++;
        const r = await c.call('tool.invoke', { tool_id: TOOL_ID, args: { text: `call ${i} of the soak` }, wait_ms: 30_000 });
        if (r === null) continue; // no answer: counted as unanswered
        const now = performance.now();
        maxStallMs = Math.max(maxStallMs, now - lastAnswerAt);
        lastAnswerAt = now;
        answered++;
        if (BUSY_RE.test(JSON.stringify(r))) busySurfaced++;
        if (!r.ok) {
          fail(r.code);
          continue;
        }
        const res = r.result as { run_id: string; state: string; output: { words?: number } | null };
        runIds.push(res.run_id);
        if (res.state === 'succeeded' && res.output?.words === 5) succeeded++;
        else fail(`run ${res.state}`);
      }
    };
    await Promise.all(conns.flatMap((c) => Array.from({ length: opts.inflight }, () => worker(c))));
    clearInterval(progress);
    const wallMs = performance.now() - started;
    const writerReport = writerProc ? await writerProc.stop() : { commits: 0, errors: [] };
    writerProc = null;

    // Store: one run per answered call, each one succeeded step with one succeeded attempt.
    const stored = new Set<string>();
    let badRuns = 0;
    let after: string | undefined;
    for (;;) {
      const page = gw.engine.list({ limit: 500, ...(after !== undefined ? { after } : {}) });
      for (const run of page) {
        stored.add(run.id);
        const d = gw.engine.get(run.id);
        const step = d.steps[0];
        const good = run.kind === 'tool' && run.state === 'succeeded' && d.steps.length === 1 && step?.tool_id === TOOL_ID && step.state === 'succeeded' && step.attempts.length === 1 && step.attempts[0]?.state === 'succeeded';
        if (!good) badRuns++;
        if (BUSY_RE.test(JSON.stringify(d))) busySurfaced++;
      }
      if (page.length < 500) break;
      after = page[page.length - 1]!.id;
    }
    const named = new Set(runIds);
    let unmatchedRuns = 0;
    for (const id of named) if (!stored.has(id)) unmatchedRuns++;
    for (const id of stored) if (!named.has(id)) unmatchedRuns++;
    return {
      calls: opts.calls,
      answered,
      succeeded,
      duplicateAnswers,
      unanswered: opts.calls - answered,
      failures,
      busySurfaced,
      runs: stored.size,
      badRuns,
      duplicateRunIds: runIds.length - named.size,
      unmatchedRuns,
      writerCommits: writerReport.commits,
      writerErrors: writerReport.errors,
      wallMs,
      callsPerSecond: answered / (wallMs / 1000),
      maxStallMs,
    };
  } finally {
    await writerProc?.stop().catch(() => undefined);
    await Promise.all(conns.map((c) => c.client.close().catch(() => undefined)));
    await gw?.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/** True when the report shows no lost, duplicated or failed call and no busy error. */
export function soakPassed(r: SoakReport): boolean {
  return (
    r.answered === r.calls &&
    r.succeeded === r.calls &&
    r.unanswered === 0 &&
    r.duplicateAnswers === 0 &&
    r.busySurfaced === 0 &&
    r.runs === r.calls &&
    r.badRuns === 0 &&
    r.duplicateRunIds === 0 &&
    r.unmatchedRuns === 0 &&
    r.writerErrors.length === 0
  );
}

async function main(): Promise<void> {
  const num = (name: string, dflt: number) => {
    const v = process.env[name];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const opts: SoakOptions = { calls: num('SOAK_CALLS', 50_000), connections: num('SOAK_CONNECTIONS', 32), inflight: num('SOAK_INFLIGHT', 4), tokens: num('SOAK_TOKENS', 4) };
  console.log(`soak: ${opts.calls} calls of ${TOOL_ID}, ${opts.connections} WebSocket connections x ${opts.inflight} in flight over ${opts.tokens} tokens, a writer process committing every 50 ms`);
  let last = 0;
  const r = await soak({
    ...opts,
    deadlineMs: num('SOAK_DEADLINE_MS', 30 * 60_000),
    onProgress: (n, ms) => {
      if (ms - last < 5000) return;
      last = ms;
      console.log(`  ${(ms / 1000).toFixed(0)} s: ${n} answered (${(n / (ms / 1000)).toFixed(0)} calls/s)`);
    },
  });
  console.log(`answered ${r.answered}/${r.calls} in ${(r.wallMs / 1000).toFixed(1)} s: ${r.callsPerSecond.toFixed(0)} calls/s; longest stretch without an answer ${r.maxStallMs.toFixed(0)} ms`);
  console.log(`checks: succeeded ${r.succeeded}, unanswered ${r.unanswered}, duplicate answers ${r.duplicateAnswers}, failures ${JSON.stringify(r.failures)}, busy errors surfaced ${r.busySurfaced}`);
  console.log(`store: ${r.runs} runs, ${r.badRuns} not one succeeded step with one attempt, duplicate run ids ${r.duplicateRunIds}, unmatched ${r.unmatchedRuns}; writer commits ${r.writerCommits}, writer errors ${r.writerErrors.length ? JSON.stringify(r.writerErrors) : 0}`);
  const ok = soakPassed(r);
  console.log(ok ? 'soak: PASS' : 'soak: FAIL');
  process.exitCode = ok ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--writer') await writer(process.argv[3] ?? '');
  else await main();
}
