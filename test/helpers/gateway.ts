/**
 * Test helpers: a real gateway on port 0 in a temporary home, and a raw protocol client written
 * from PROTOCOL.md alone (independent of sdk/, so the two cross-check each other).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync, createHash, sign, type KeyObject } from 'node:crypto';
import WebSocket from 'ws';
import { startGateway, type RunningGateway } from '../../core/runtime.js';
import Database from 'better-sqlite3';
import { loadConfig, type ConfigOverrides } from '../../core/config/index.js';
import { PgBridge } from '../../core/store/pg/bridge.js';
import { sharedPostgres, type PgCluster } from './postgres.js';

export interface TestGateway extends RunningGateway {
  adminToken: string;
}

/**
 * TYRUM_TEST_STORE=postgres runs the gateways of a test file on PostgreSQL: one throwaway cluster
 * per file (test/helpers/postgres.ts, stopped when the file ends), a new database per new home
 * (a copy of a template migrated once per file),
 * `store` written into the home's config.json (kept when the same home starts again; CLI child
 * processes read it from there).
 */
export const TEST_STORE: 'sqlite' | 'postgres' = process.env.TYRUM_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

let cluster: (() => Promise<PgCluster>) | null = null;

/** The `store` section a new test home gets (null: SQLite, the default). */
export async function testStoreConfig(): Promise<Record<string, unknown> | null> {
  if (TEST_STORE !== 'postgres') return null;
  if (cluster === null) {
    const { default: tap } = await import('tap');
    cluster = sharedPostgres(tap);
  }
  // Already migrated (a copy of a template): a gateway test tests the gateway, not the
  // migrations (test/core/store/pg/db.test.ts, the cluster tests' first replica do).
  return { kind: 'postgres', url: await (await cluster()).migratedDatabase() };
}

/** Write `config` (or keep the home's) with the test store's section added when it has none. */
export async function writeTestConfig(home: string, config?: Record<string, unknown>): Promise<void> {
  const path = join(home, 'config.json');
  const existing = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>) : undefined;
  const store = existing?.store ?? (await testStoreConfig());
  if (config === undefined && (store === null || existing?.store !== undefined)) return;
  const next: Record<string, unknown> = { ...(config ?? existing ?? {}) };
  if (store !== null && next.store === undefined) next.store = store;
  writeFileSync(path, JSON.stringify(next));
}

/** Starts a gateway in a fresh temp home (or `home`), silent, on a free port. */
export async function startTestGateway(opts: { home?: string; overrides?: ConfigOverrides; config?: Record<string, unknown>; uiDir?: string; log?: { level: string; stream: { write(line: string): void } } } = {}): Promise<TestGateway> {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'tyrum-test-'));
  await writeTestConfig(home, opts.config);
  const gw = await startGateway({
    home,
    overrides: { port: 0, ...opts.overrides },
    logLevel: opts.log?.level ?? false,
    ...(opts.log ? { logStream: opts.log.stream } : {}),
    ...(opts.uiDir !== undefined ? { uiDir: opts.uiDir } : {}),
  });
  if (gw.store.dialect !== TEST_STORE) {
    await gw.close();
    throw new Error(`the test gateway runs on ${gw.store.dialect}, not on TYRUM_TEST_STORE's ${TEST_STORE}`);
  }
  return Object.assign(gw, { adminToken: gw.bootstrapToken ?? '' });
}

/**
 * Run one statement on the home's database through a connection of its own, behind the
 * gateway's back (as the CLI or time passing would): the SQLite file `<home>/tyrum.db`, or the
 * PostgreSQL database the home's config names (`?` placeholders either way). Returns the rows.
 */
export function externalQuery(home: string, sql: string, params: unknown[] = []): Array<Record<string, unknown>> {
  const config = loadConfig(home);
  if (config.store.kind === 'sqlite') {
    const db = new Database(join(home, 'tyrum.db'));
    try {
      const st = db.prepare(sql);
      if (st.reader) return st.all(...params) as Array<Record<string, unknown>>;
      st.run(...params);
      return [];
    } finally {
      db.close();
    }
  }
  const bridge = new PgBridge(config.store.url());
  try {
    let n = 0;
    return bridge.query(sql.replace(/\?/g, () => `$${++n}`), params).rows;
  } finally {
    void bridge.close();
  }
}

/** One write behind the gateway's back (externalQuery). */
export async function externalWrite(home: string, sql: string, params: unknown[]): Promise<void> {
  externalQuery(home, sql, params);
  await Promise.resolve();
}

/**
 * Everything the home's database holds, as text, for "this secret is nowhere" checks: SQLite's
 * file and its WAL as bytes; on PostgreSQL every row of every table as text (bytea as hex).
 */
export function databaseText(home: string): string {
  if (loadConfig(home).store.kind === 'sqlite') {
    return [join(home, 'tyrum.db'), join(home, 'tyrum.db-wal')].map((f) => (existsSync(f) ? readFileSync(f).toString('latin1') : '')).join('\n');
  }
  const tables = externalQuery(home, "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'");
  return tables.map((t) => externalQuery(home, `SELECT t::text AS r FROM "${String(t.name)}" t`).map((r) => String(r.r)).join('\n')).join('\n');
}

export function removeHome(home: string): void {
  rmSync(home, { recursive: true, force: true });
}

/** A test gateway with an admin connection; both closed, and the home removed, when `t` ends. */
export async function gatewayWithAdmin(t: { teardown(fn: () => unknown): void }): Promise<{ gw: TestGateway; admin: Awaited<ReturnType<typeof connect>> }> {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const admin = await connect(gw);
  t.teardown(() => admin.conn.ws.close());
  return { gw, admin };
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(buf: Buffer): string {
  let bits = '';
  for (const b of buf) bits += b.toString(2).padStart(8, '0');
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += B32[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
  return out;
}

export interface RawDevice {
  privateKey: KeyObject;
  pubkey: string;
  device_id: string;
}

/** A fresh Ed25519 device identity, derived exactly as PROTOCOL.md says. */
export function newDevice(): RawDevice {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey, pubkey: der.toString('base64url'), device_id: 'dev_' + base32(createHash('sha256').update(der).digest()) };
}

export function transcript(f: { protocol_rev: number; role: string; device_id: string; connection_id: string; challenge: string }): Buffer {
  return Buffer.from(`tyrum-connect-proof\nprotocol_rev=${f.protocol_rev}\nrole=${f.role}\ndevice_id=${f.device_id}\nconnection_id=${f.connection_id}\nchallenge=${f.challenge}\n`);
}

export function signTranscript(dev: RawDevice, f: Parameters<typeof transcript>[0]): string {
  return sign(null, transcript(f), dev.privateKey).toString('base64url');
}

/** A raw socket plus a queue of parsed inbound frames and the close code. */
export class RawConn {
  readonly frames: Array<Record<string, unknown>> = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: Array<() => void> = [];
  private n = 0;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      this.frames.push(JSON.parse(d.toString()) as Record<string, unknown>);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => this.wake());
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async waitFor<T>(pick: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pick();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(obj: unknown): void {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /** Sends a request and resolves with its response frame. */
  async request(type: string, payload: Record<string, unknown> = {}, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const request_id = `r${++this.n}`;
    this.send({ request_id, type, payload });
    return this.response(request_id, timeoutMs);
  }

  response(requestId: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    return this.waitFor(() => this.frames.find((f) => f.request_id === requestId) ?? (this.closed ? ({ closed: this.closed } as Record<string, unknown>) : undefined), timeoutMs, `response ${requestId}`);
  }

  event(type: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    return this.waitFor(() => this.frames.find((f) => f.event_id !== undefined && f.type === type), timeoutMs, `event ${type}`);
  }

  /** A request the gateway sent this peer (a node): the frame with `payload` and no `ok`. */
  incoming(type: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    return this.waitFor(() => this.frames.find((f) => f.type === type && 'payload' in f && !('ok' in f) && f.event_id === undefined), timeoutMs, `request ${type}`);
  }

  closeCode(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    return this.waitFor(() => this.closed ?? undefined, timeoutMs, 'close');
  }
}

export interface OpenOptions {
  token?: string | null;
  protocols?: string[];
  authVia?: 'header' | 'subprotocol';
  headers?: Record<string, string>;
}

/** Opens a WebSocket; resolves with the connection or the HTTP status of a refused upgrade. */
export function open(gw: { port: number }, opts: OpenOptions = {}): Promise<RawConn | { status: number; body: string }> {
  const token = opts.token === undefined ? (gw as TestGateway).adminToken : opts.token;
  const protocols = [...(opts.protocols ?? ['tyrum-v1'])];
  const headers: Record<string, string> = { ...opts.headers };
  if (token !== null) {
    if (opts.authVia === 'subprotocol') protocols.push('tyrum-auth.' + Buffer.from(token).toString('base64url'));
    else headers.authorization = `Bearer ${token}`;
  }
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, protocols, { headers });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('open', () => resolve(new RawConn(ws)));
    ws.once('error', (e) => reject(e));
  });
}

/** Opens and completes the handshake; returns the connection and the handshake result. */
export async function connect(gw: { port: number }, opts: OpenOptions & { role?: 'client' | 'node'; device?: RawDevice; capabilities?: Array<{ id: string; version: string }>; label?: string } = {}) {
  const conn = await open(gw, opts);
  if (!(conn instanceof RawConn)) throw new Error(`upgrade refused: ${conn.status} ${conn.body}`);
  const device = opts.device ?? newDevice();
  const role = opts.role ?? 'client';
  const init = await conn.request('connect.init', { protocol_rev: 1, role, device: { device_id: device.device_id, pubkey: device.pubkey, ...(opts.label !== undefined ? { label: opts.label } : {}) }, capabilities: opts.capabilities ?? [] });
  if (init.ok !== true) throw new Error(`connect.init failed: ${JSON.stringify(init)}`);
  const { connection_id, challenge } = init.result as { connection_id: string; challenge: string };
  const proof = signTranscript(device, { protocol_rev: 1, role, device_id: device.device_id, connection_id, challenge });
  const res = await conn.request('connect.proof', { connection_id, proof });
  if (res.ok !== true) throw new Error(`connect.proof failed: ${JSON.stringify(res)}`);
  return { conn, device, hello: res.result as { client_id: string; device_id: string; role: string; scopes: string[] } };
}

/** The secret part of a `tyrum_<id>_<secret>` token (the secret is base64url and may itself contain "_"). */
export function tokenSecret(token: string): string {
  const m = /^tyrum_[0-9a-f]{16}_([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) throw new Error(`not a token: ${token.slice(0, 12)}…`);
  return m[1]!;
}
