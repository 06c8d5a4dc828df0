/**
 * The synchronous bridge to PostgreSQL: the only module that imports `pg`.
 *
 * The store layer is synchronous by design (see core/store/index.ts): repositories run a
 * statement and use its rows in the same call. `pg` is asynchronous, so a worker thread owns the
 * `pg` Client and the calling thread blocks on it: it posts the statement on a MessagePort, waits
 * with `Atomics.wait` on a shared counter the worker bumps after each answer, and takes the
 * answer with `receiveMessageOnPort` (the synckit pattern). A local round trip costs ~100 µs.
 *
 * `send` posts without blocking and resolves when the answer arrives (a group's COMMIT: its units
 * resolve only once the server acknowledged it, i.e. it is durable with synchronous_commit=on).
 * The worker runs messages one at a time, in the order they were posted, on its one connection,
 * so a statement posted after a `send` runs after it (a BEGIN queues behind the COMMIT).
 *
 * Failure: every blocking wait has a deadline (`timeoutMs`). A server that does not answer in
 * time, a connection that drops, a server that cannot be reached: the statement fails with
 * TYRUM_ERR_STORE_UNAVAILABLE, and so does everything posted before it that was still waiting
 * (`send`s included). The connection is gone, and with it any open transaction (the server rolls
 * it back): `generation` counts such losses, so the store can tell that a transaction it opened
 * earlier no longer exists. After a timeout the worker is terminated (it may be stuck on a hung
 * socket); until a new connection answers, statements fail at once (TYRUM_ERR_STORE_UNAVAILABLE,
 * "reconnecting") while a probe posted without blocking reconnects, so a stalled server costs the
 * calling thread one deadline, not one per statement. After a drop the worker reconnects for the
 * next statement. A connection that drops while idle (between statements) is reported to
 * the next statement as lost, which does not run: it never runs silently on a new session outside
 * the transaction its caller believes open. A caller that knows no transaction is open (a BEGIN,
 * a reader connection) passes `strict = false`: such a statement just reconnects, and is run once
 * more on a new connection if the old one turns out dead when it is sent (a BEGIN or a read is
 * safe to repeat). Nothing else is retried: a statement's outcome after a drop is unknown.
 *
 * Types: int8 and numeric values arrive as JS numbers (timestamps are in ms); a value beyond
 * 2^53 is refused (TYRUM_ERR_INTERNAL) rather than rounded. bytea arrives as a Buffer. Booleans
 * stay integers in the schema (the repositories expect 0/1).
 *
 * The connection URL may hold a password: it goes to the worker and to `pg` only, never into an
 * error message or a log line (errors name the host and database only).
 */
import { createRequire } from 'node:module';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { TyrumError } from '../../errors/index.js';

export interface PgField {
  name: string;
  dataTypeID: number;
}

export interface PgResult {
  rows: Array<Record<string, unknown>>;
  rowCount: number;
  fields: PgField[];
  /**
   * The server's command tag of the (last) statement, e.g. "COMMIT", "INSERT". A COMMIT of a
   * transaction that had failed is answered "ROLLBACK", with no error: the store checks the tag.
   */
  command?: string;
}

export interface PgBridgeOptions {
  /**
   * Longest a statement may take before it fails with TYRUM_ERR_STORE_UNAVAILABLE, waiting for
   * the statements posted before it and a reconnect included. Default 30 s.
   */
  timeoutMs?: number;
  /** Longest connecting may take; a statement that starts a new worker may take this much longer. Default 10 s. */
  connectTimeoutMs?: number;
  /** Settings applied on every new connection (`SET name = value`), e.g. `{ application_name: 'tyrum' }`. */
  settings?: Record<string, string>;
}

/** A server-side SQL error (constraint, syntax, ...): the connection is fine. */
export class PgSqlError extends Error {
  constructor(
    message: string,
    /** The SQLSTATE, e.g. "23505". */
    readonly code: string,
    readonly constraint: string | undefined,
  ) {
    super(message);
    this.name = 'PgSqlError';
  }
}

type Answer =
  | { id: number; ok: true; rows: Array<Record<string, unknown>>; rowCount: number; fields: PgField[]; command: string }
  | { id: number; ok: false; kind: 'sql'; message: string; code: string; constraint?: string }
  | { id: number; ok: false; kind: 'lost' | 'range'; message: string };

interface Request {
  id: number;
  text: string;
  values: unknown[];
  /** A server-side prepared statement name (reused on this connection), or undefined. */
  name?: string;
  /** false: the caller has no transaction open, so a connection dropped since the last statement is just reopened. */
  strict?: boolean;
}

/** The worker: plain JavaScript, evaluated (it must run the same from sources and from dist). */
const WORKER = String.raw`
const { workerData } = require('node:worker_threads');
const pg = require(workerData.pg);
const { port, flag, url, connectTimeoutMs, settings } = workerData;
const INT8 = 20, NUMERIC = 1700, BYTEA = 17;
let client = null;
// The connection dropped between statements (an idle connection's 'error'/'end'): the next
// statement is answered 'lost' instead of running on a new connection, so the caller learns that
// its session (and any transaction open in it) is gone before anything runs outside it.
let dropped = false;
let queue = Promise.resolve();

function answer(m) {
  port.postMessage(m);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
}

async function connect() {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, keepAlive: true });
  // An idle connection that drops emits 'error'; the next statement reconnects.
  const drop = () => { if (client === c) { client = null; dropped = true; } };
  c.on('error', drop);
  c.on('end', drop);
  await c.connect();
  for (const [k, v] of Object.entries(settings)) await c.query('SELECT set_config($1, $2, false)', [k, v]);
  return c;
}

function lostError(e) {
  // Errors that are not the server's answer to the statement, or that end the session.
  if (!e || typeof e.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code)) return true;
  return e.code.startsWith('08') || e.code.startsWith('57P');
}

function convert(res) {
  const fields = res.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
  for (const f of fields) {
    if (f.dataTypeID !== INT8 && f.dataTypeID !== NUMERIC) continue;
    for (const row of res.rows) {
      const v = row[f.name];
      if (v === null || v === undefined) continue;
      const n = Number(v);
      if (!Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n)) || (f.dataTypeID === INT8 && String(n) !== String(v))) {
        return { range: 'column ' + f.name + ' holds ' + String(v).slice(0, 40) + ', beyond what a JavaScript number holds exactly (2^53)' };
      }
      row[f.name] = n;
    }
  }
  return { rows: res.rows, rowCount: res.rowCount ?? 0, fields, command: res.command };
}

function param(v) {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
}

async function run(m, retried) {
  if (dropped) {
    dropped = false;
    // A lenient statement (no transaction can be open: BEGIN, a reader's query) reconnects.
    if (m.strict !== false) return answer({ id: m.id, ok: false, kind: 'lost', message: 'connection lost since the previous statement' });
  }
  try {
    if (client === null) client = await connect();
  } catch (e) {
    client = null;
    return answer({ id: m.id, ok: false, kind: 'lost', message: 'cannot connect: ' + (e && e.message || String(e)) });
  }
  const c = client;
  try {
    const q = { text: m.text, values: m.values.map(param) };
    if (m.name !== undefined) q.name = m.name;
    const res = await c.query(q);
    const r = convert(Array.isArray(res) ? res[res.length - 1] : res);
    if (r.range !== undefined) return answer({ id: m.id, ok: false, kind: 'range', message: r.range });
    answer({ id: m.id, ok: true, rows: r.rows, rowCount: r.rowCount, fields: r.fields, command: r.command });
  } catch (e) {
    if (lostError(e)) {
      if (client === c) client = null;
      dropped = false;
      c.end().catch(() => undefined);
      // A lenient statement met a connection that had died unnoticed: once more, on a new one.
      if (m.strict === false && !retried) return run(m, true);
      return answer({ id: m.id, ok: false, kind: 'lost', message: 'connection lost: ' + (e && e.message || String(e)) });
    }
    answer({ id: m.id, ok: false, kind: 'sql', message: e.message, code: e.code, constraint: e.constraint });
  }
}

port.on('message', (m) => {
  if (m === 'close') {
    queue = queue.then(async () => {
      if (client !== null) await client.end().catch(() => undefined);
      client = null;
      port.close();
    });
    return;
  }
  queue = queue.then(() => run(m, false));
});
`;

interface Pending {
  resolve: (r: PgResult) => void;
  reject: (e: unknown) => void;
}

/** Where the URL points, without credentials (for messages). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

export class PgBridge {
  /** Bumped whenever the connection was lost or abandoned: a transaction opened before is gone. */
  generation = 0;
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private nextId = 0;
  /** Answers not yet taken, by request id: `send`s waiting, and sync requests posted before. */
  private readonly pending = new Map<number, Pending | null>();
  private readonly names = new Map<string, string>();
  private readonly sends = new Set<Promise<PgResult>>();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly where: string;

  constructor(
    private readonly url: string,
    private readonly options: PgBridgeOptions = {},
  ) {
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 30_000);
    this.connectTimeoutMs = Math.max(1, options.connectTimeoutMs ?? 10_000);
    this.where = describeUrl(url);
  }

  /**
   * Set when a statement went unanswered past the deadline (a stalled server or network): until a
   * new connection answers, statements fail at once instead of each blocking the thread for the
   * connect timeout in turn. A probe (`SELECT 1`, posted without blocking) reconnects meanwhile.
   */
  private unreachable: TyrumError | null = null;
  private probe: Promise<PgResult> | null = null;

  /** Run one statement and return its result, blocking this thread until the server answers. */
  query(text: string, values: readonly unknown[] = [], prepare = false, strict = true): PgResult {
    if (this.unreachable !== null) {
      if (this.probe === null && !this.closed) {
        const probe = this.postAsync('SELECT 1', [], null);
        this.probe = probe;
        probe.then(
          () => {
            if (this.probe === probe) this.unreachable = null;
          },
          () => undefined,
        ).finally(() => {
          if (this.probe === probe) this.probe = null;
        });
      }
      throw this.unavailable(`${this.unreachable.message}; reconnecting (statements fail at once until PostgreSQL answers again)`);
    }
    // A new worker loads pg and connects first: that gets its own allowance.
    const fresh = this.worker === null;
    const id = this.post(text, values, prepare, strict);
    this.pending.set(id, null);
    const deadline = Date.now() + this.timeoutMs + (fresh ? this.connectTimeoutMs : 0);
    const port = this.port!;
    for (;;) {
      const seen = Atomics.load(this.flag, 0);
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        const a = m.message as Answer;
        if (a.id === id) {
          this.pending.delete(id);
          return this.settle(a);
        }
        this.dispatch(a);
      }
      const left = deadline - Date.now();
      // 'not-equal' or 'ok': an answer arrived since `seen` was read; look again.
      if (left > 0 && Atomics.wait(this.flag, 0, seen, left) !== 'timed-out') continue;
      if (Atomics.load(this.flag, 0) !== seen) continue;
      const err = this.abandon(`no answer from PostgreSQL at ${this.where} within ${this.timeoutMs} ms`);
      this.unreachable = err;
      throw err;
    }
  }

  /**
   * Post a statement without blocking; resolves with its result (or rejects) when the worker
   * answers. Statements run in the order they were posted, `query`s and `send`s alike.
   */
  send(text: string, values: readonly unknown[] = []): Promise<PgResult> {
    return this.postAsync(text, values, null);
  }

  /**
   * Like `send`, but `done` is called synchronously as soon as the answer is taken, even while
   * another statement's `query` is waiting (before any promise callback runs): the store records
   * a COMMIT's outcome in order this way. `done` must not run statements itself.
   */
  sendNotify(text: string, done: (error: unknown, result?: PgResult) => void): void {
    this.postAsync(text, [], done).catch(() => undefined);
  }

  private postAsync(text: string, values: readonly unknown[], done: ((error: unknown, result?: PgResult) => void) | null): Promise<PgResult> {
    const p = new Promise<PgResult>((resolve, reject) => {
      let id: number;
      try {
        id = this.post(text, values, false);
      } catch (e) {
        done?.(e);
        return reject(e);
      }
      this.pending.set(id, {
        resolve: (r) => {
          done?.(null, r);
          resolve(r);
        },
        reject: (e) => {
          done?.(e);
          reject(e);
        },
      });
      // The port delivers this answer through its 'message' event; keep the process alive meanwhile.
      this.port!.ref();
      this.armTimer();
    });
    this.sends.add(p);
    const settled = (): void => void this.sends.delete(p);
    p.then(settled, settled);
    return p;
  }

  /** LISTEN on `channel` on a connection of its own to the same database (see PgListener). */
  listen(channel: string, onEvent: (e: PgListenEvent) => void, retryMs?: number): PgListener {
    return new PgListener(this.url, channel, onEvent, { connectTimeoutMs: this.connectTimeoutMs, ...(retryMs !== undefined ? { retryMs } : {}) });
  }


  /** Close the connection (after everything posted ran) and stop the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.sends]);
    const worker = this.worker;
    const port = this.port;
    if (worker === null || port === null) return;
    this.worker = null;
    this.port = null;
    worker.ref();
    const exited = new Promise<void>((done) => worker.once('exit', () => done()));
    port.postMessage('close');
    // The worker ends once its port is closed and its connection ended; a stuck one is terminated.
    const timer = setTimeout(() => void worker.terminate(), 2_000);
    await exited;
    clearTimeout(timer);
    port.close();
  }

  /** Statements posted to the server so far (each one a round trip; metrics and the bench read it). */
  statements = 0;

  private post(text: string, values: readonly unknown[], prepare: boolean, strict = true): number {
    if (this.closed) throw new TyrumError('TYRUM_ERR_INTERNAL', 'the PostgreSQL store is closed');
    if (this.worker === null) this.start();
    this.statements += 1;
    const id = ++this.nextId;
    const req: Request = { id, text, values: values as unknown[] };
    if (!strict) req.strict = false;
    if (prepare) {
      let name = this.names.get(text);
      if (name === undefined) {
        name = `tyrum_${this.names.size + 1}`;
        this.names.set(text, name);
      }
      req.name = name;
    }
    this.port!.postMessage(req);
    return id;
  }

  private start(): void {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WORKER, {
      eval: true,
      workerData: {
        pg: createRequire(import.meta.url).resolve('pg'),
        port: port2,
        flag: this.flag,
        url: this.url,
        connectTimeoutMs: this.connectTimeoutMs,
        settings: this.options.settings ?? {},
      },
      transferList: [port2],
    });
    worker.unref();
    // A worker that dies (it should not: every error is answered) fails what waits on it.
    worker.on('error', () => undefined);
    worker.on('exit', () => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.port = null;
      this.failAll(this.unavailable('the PostgreSQL connection worker exited'));
    });
    port1.on('message', (a: Answer) => this.dispatch(a));
    port1.unref();
    this.worker = worker;
    this.port = port1;
    // The server-side prepared statements belonged to the old connection.
    this.names.clear();
  }

  private timer: NodeJS.Timeout | null = null;

  /** While `send`s wait, a watchdog fails them (and abandons the worker) past the deadline. */
  private armTimer(): void {
    if (this.timer !== null) return;
    const check = (): void => {
      this.timer = null;
      if (![...this.pending.values()].some((p) => p !== null)) return;
      if (Date.now() - this.lastAnswerAt >= this.timeoutMs) {
        this.unreachable = this.abandon(`no answer from PostgreSQL at ${this.where} within ${this.timeoutMs} ms`);
        return;
      }
      this.timer = setTimeout(check, Math.min(1_000, this.timeoutMs));
      this.timer.unref();
    };
    this.lastAnswerAt = Date.now();
    this.timer = setTimeout(check, Math.min(1_000, this.timeoutMs));
    this.timer.unref();
  }

  private lastAnswerAt = 0;

  private dispatch(a: Answer): void {
    this.lastAnswerAt = Date.now();
    const p = this.pending.get(a.id);
    this.pending.delete(a.id);
    if (![...this.pending.values()].some((x) => x !== null)) this.port?.unref();
    if (p === undefined || p === null) {
      // A sync request's answer arriving through the event: only after it was abandoned. A lost
      // connection still counts.
      if (!a.ok && a.kind === 'lost') this.generation += 1;
      return;
    }
    try {
      p.resolve(this.settle(a));
    } catch (e) {
      p.reject(e);
    }
  }

  private settle(a: Answer): PgResult {
    if (a.ok) {
      for (const f of a.fields) {
        if (f.dataTypeID !== 17) continue;
        for (const row of a.rows) {
          const v = row[f.name];
          if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[f.name] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
        }
      }
      return { rows: a.rows, rowCount: a.rowCount, fields: a.fields, command: a.command };
    }
    if (a.kind === 'sql') throw new PgSqlError(sqlMessage(a.code, a.message), a.code, a.constraint);
    if (a.kind === 'range') throw new TyrumError('TYRUM_ERR_INTERNAL', `refusing a PostgreSQL value: ${a.message}`);
    this.generation += 1;
    throw this.unavailable(`PostgreSQL at ${this.where}: ${a.message}`);
  }

  /** Give up on the worker (hung or dead): fail everything waiting, start afresh next time. */
  private abandon(message: string): TyrumError {
    const err = this.unavailable(message);
    const worker = this.worker;
    this.worker = null;
    this.port?.close();
    this.port = null;
    if (worker !== null) void worker.terminate();
    this.generation += 1;
    this.failAll(err);
    return err;
  }

  private failAll(err: TyrumError): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p?.reject(err);
  }

  private unavailable(message: string): TyrumError {
    return new TyrumError('TYRUM_ERR_STORE_UNAVAILABLE', message);
  }
}

/** The listening worker: one `pg` Client that LISTENs and forwards notifications, reconnecting. */
const LISTEN_WORKER = String.raw`
const { workerData } = require('node:worker_threads');
const pg = require(workerData.pg);
const { port, url, connectTimeoutMs, channel, retryMs } = workerData;
let client = null;
let stopping = false;
let timer = null;

function later() {
  if (stopping || timer !== null) return;
  timer = setTimeout(() => { timer = null; void open(); }, retryMs);
}

async function open() {
  if (stopping) return;
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, keepAlive: true });
  const drop = () => {
    if (client !== c) return;
    client = null;
    port.postMessage({ kind: 'lost' });
    c.end().catch(() => undefined);
    later();
  };
  c.on('error', drop);
  c.on('end', drop);
  c.on('notification', (n) => { if (n.channel === channel) port.postMessage({ kind: 'notify' }); });
  try {
    await c.connect();
    await c.query('SELECT set_config($1, $2, false)', ['application_name', 'tyrum-listen']);
    await c.query('LISTEN "' + channel + '"');
  } catch (e) {
    c.end().catch(() => undefined);
    port.postMessage({ kind: 'lost' });
    return later();
  }
  if (stopping) return void c.end().catch(() => undefined);
  client = c;
  // Listening from now on: whatever was notified while not listening is read by the caller now.
  port.postMessage({ kind: 'listening' });
}

port.on('message', (m) => {
  if (m !== 'close') return;
  stopping = true;
  if (timer !== null) clearTimeout(timer);
  const c = client;
  client = null;
  (c === null ? Promise.resolve() : c.end().catch(() => undefined)).then(() => port.close());
});
void open();
`;

/** What a listener reports: a notification, (re)listening (anything may have been missed), or the connection lost. */
export type PgListenEvent = 'notify' | 'listening' | 'lost';

/**
 * LISTEN on one channel from a worker thread of its own (a connection that never runs anything
 * else), calling `onEvent` on this thread's event loop: asynchronously, never inside a blocking
 * statement. A lost connection is reported and reopened every `retryMs`; once listening again
 * `listening` is reported, since notifications sent meanwhile are gone. The worker never keeps
 * the process alive. The URL never appears in what is reported.
 */
export class PgListener {
  private worker: Worker | null;
  private port: MessagePort | null;
  private closed = false;

  constructor(url: string, channel: string, onEvent: (e: PgListenEvent) => void, options: { connectTimeoutMs?: number; retryMs?: number } = {}) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new TyrumError('TYRUM_ERR_INTERNAL', `not a channel name: ${channel.slice(0, 80)}`);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(LISTEN_WORKER, {
      eval: true,
      workerData: { pg: createRequire(import.meta.url).resolve('pg'), port: port2, url, channel, connectTimeoutMs: Math.max(1, options.connectTimeoutMs ?? 10_000), retryMs: Math.max(1, options.retryMs ?? 1_000) },
      transferList: [port2],
    });
    worker.unref();
    worker.on('error', () => undefined);
    port1.on('message', (m: { kind: PgListenEvent }) => {
      if (!this.closed) onEvent(m.kind);
    });
    port1.unref();
    this.worker = worker;
    this.port = port1;
  }

  /** Stop listening and end the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = this.worker!;
    const port = this.port!;
    this.worker = null;
    this.port = null;
    const exited = new Promise<void>((done) => worker.once('exit', () => done()));
    worker.ref();
    port.postMessage('close');
    const timer = setTimeout(() => void worker.terminate(), 2_000);
    await exited;
    clearTimeout(timer);
    port.close();
  }
}


/**
 * The server's message, prefixed like SQLite's for the constraint classes (so a caller or test
 * that tells "UNIQUE constraint failed" from "CHECK constraint failed" reads the same on both).
 */
function sqlMessage(code: string, message: string): string {
  const kind = { '23505': 'UNIQUE', '23514': 'CHECK', '23503': 'FOREIGN KEY', '23502': 'NOT NULL' }[code];
  return kind === undefined ? message : `${kind} constraint failed: ${message}`;
}
