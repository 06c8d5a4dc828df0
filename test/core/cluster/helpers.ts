// Shared by the cluster tests: real `tyrum start` replicas (each its own home with copies of the
// first one's keys, audit checkpoint and plugin files) on one database of a per-file cluster.
import type { Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, removeHome, type RawConn } from '../../helpers/gateway.js';
import { runCli } from '../../helpers/cli.js';
import type { PgCluster } from '../../helpers/postgres.js';

export const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const BIN = join(import.meta.dirname, '../../../bin/tyrum.js');

export type Invoke = { run_id: string; state: string; approval_id: string | null };
export const result = <T>(r: Record<string, unknown>): T => {
  if (r.ok !== true) throw new Error(`request failed: ${JSON.stringify(r.error ?? r)}`);
  return r.result as T;
};

export interface Replica {
  home: string;
  child: ChildProcess;
  port: number;
  token: string | null;
  err: () => string;
  /** Its log (stdout: one JSON object a line; empty at log level silent). */
  out: () => string;
}

/** Starts `tyrum start` on `home`; resolves once it listens. The test kills it at the end. `logLevel`: what it logs to stderr (`err()`). */
export async function startReplica(t: Test, home: string, logLevel = 'silent'): Promise<Replica> {
  const child = spawn(process.execPath, [BIN, 'start', '--home', home, '--port', '0', '--log-level', logLevel], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 90_000;
  while (!/listening on ws:\/\/127\.0\.0\.1:\d+\/ws/.test(err) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  const port = Number(/127\.0\.0\.1:(\d+)\/ws/.exec(err)?.[1]);
  if (!Number.isInteger(port)) throw new Error(`replica on ${home} did not start: ${err.slice(0, 3000)}`);
  return { home, child, port, token: /tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(err)?.[0] ?? null, err: () => err, out: () => out };
}

/** A new home on `url`: the first one creates the keys; the others get copies (keys, audit checkpoint, plugin files). */
export function newHome(t: Test, url: string, from?: string): string {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-replica-'));
  t.teardown(() => removeHome(home));
  writeFileSync(join(home, 'config.json'), JSON.stringify({ store: { kind: 'postgres', url } }));
  if (from !== undefined) {
    // The audit checkpoint too: a home with none, on a log with entries, is refused as truncated.
    for (const f of ['gateway.key', 'secrets.key', 'audit.checkpoint.json']) if (existsSync(join(from, f))) copyFileSync(join(from, f), join(home, f));
    if (existsSync(join(from, 'plugins'))) {
      mkdirSync(join(home, 'plugins'), { recursive: true });
      cpSync(join(from, 'plugins'), join(home, 'plugins'), { recursive: true });
    }
  }
  return home;
}

export async function clientOf(t: Test, r: Replica, token: string): Promise<RawConn> {
  const { conn } = await connect({ port: r.port }, { token });
  t.teardown(() => conn.ws.close());
  return conn;
}

/** Until an event frame matching `pred` arrived on `conn`. */
export function eventOn(conn: RawConn, pred: (f: Record<string, unknown>) => boolean, what: string, ms = 15_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const look = (): void => {
      const f = conn.frames.find((x) => x.event_id !== undefined && pred(x));
      if (f !== undefined) return resolve(f);
      if (Date.now() > deadline) return reject(new Error(`no ${what} on the connection (frames: ${JSON.stringify(conn.frames.map((x) => x.type))})`));
      setTimeout(look, 20);
    };
    look();
  });
}

export const payloadOf = (f: Record<string, unknown>): Record<string, unknown> => f.payload as Record<string, unknown>;

export async function waitState(conn: RawConn, runId: string, done: (s: string) => boolean): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = result<{ run: { state: string } }>(await conn.request('run.get', { run_id: runId })).run.state;
    if (done(s) || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface ReplicasOptions {
  /** More CLI commands run on the first replica's home after the notes plugin is enabled (before the others start). */
  cli?: string[][];
  /** Each replica's log level (default silent). */
  logLevel?: string;
}

/** `n` replicas on one fresh database of `cluster`, the notes plugin enabled; the first made the keys and the token. */
export async function replicas(t: Test, cluster: () => Promise<PgCluster>, n: number, o: ReplicasOptions = {}): Promise<{ url: string; all: Replica[]; token: string }> {
  const url = (await cluster()).database();
  const homeA = newHome(t, url);
  const a = await startReplica(t, homeA, o.logLevel);
  const token = a.token;
  if (token === null) throw new Error(`no bootstrap token: ${a.err().slice(0, 2000)}`);
  for (const argv of [['plugin', 'install', NOTES], ['plugin', 'grant', 'notes', '--all-requested', '--accept-risk', 'state_changing,storage'], ['plugin', 'enable', 'notes'], ...(o.cli ?? [])]) {
    // Before a `--` (the words after it are a server's command line).
    const cut = argv.includes('--') ? argv.indexOf('--') : argv.length;
    const r = await runCli([...argv.slice(0, cut), '--home', homeA, ...argv.slice(cut)]);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.err}`);
  }
  const all = [a];
  for (let i = 1; i < n; i++) {
    const r = await startReplica(t, newHome(t, url, homeA), o.logLevel);
    t.equal(r.token, null, `replica ${i + 1} finds the token the first one minted (no second bootstrap token)`);
    all.push(r);
  }
  return { url, all, token };
}

/** Resolves once `r`'s process has exited. */
export function exited(r: Replica): Promise<void> {
  return new Promise<void>((res) => (r.child.exitCode !== null || r.child.signalCode !== null ? res() : r.child.once('exit', () => res())));
}
