/**
 * The running gateway's heavy doctor checks on a worker thread (core/doctor/worker.ts): SQLite's
 * `quick_check` and the audit chain walk read the whole database (about 1.5 s at 100,000 audit
 * entries), which on the event loop would stall every client of the gateway meanwhile.
 *
 * One worker per check, started when a fresh report is due (at most one a minute, see
 * DOCTOR_REUSE_MS) and ended when it has answered: it opens its own read-only connection, which
 * WAL lets read beside the gateway's writer, and closes it before it exits. Nothing is shared with
 * the gateway but the file paths and the public key.
 *
 * Locating the worker: in dist/ it is the compiled `worker.js` next to this file. Run from the
 * sources (tsx, tap) this file is `offload.ts`; Node 20 does not apply `--import tsx` to a
 * worker, so a small evaluated bootstrap registers tsx in the worker first and then imports
 * `worker.ts` (tsx is a devDependency: present wherever the sources run).
 */
import { Worker } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { TyrumError } from '../errors/index.js';
import type { VerifyAuditResult } from '../audit/index.js';

/** What the worker is given (structured-cloned). */
export interface HeavyCheckInput {
  db: HeavyCheckDb;
  checkpointPath: string;
  /** The gateway's public key, SPKI DER base64url. */
  publicKey: string;
  maxErrors: number;
  test?: HeavyCheckTestHooks & { flag?: SharedArrayBuffer };
}

/**
 * The database the worker reads: the SQLite file (a read-only connection beside the gateway's
 * writer), or the PostgreSQL server (its own autocommit connection; the URL stays in memory,
 * structured-cloned to the worker, never logged).
 */
export type HeavyCheckDb = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; timeoutMs: number; connectTimeoutMs: number };

/** TEST ONLY: make the worker die before it checks, or pause in the middle of the audit walk. */
export interface HeavyCheckTestHooks {
  crash?: boolean;
  /** Pause after this many audit rows until the `release` given to `onHold` is called. */
  holdAfterRows?: number;
  onHold?: (release: () => void) => void;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; message: string };

/** The two results, or why each could not be had (a thrown error's message, as the in-process checks report it). */
export interface HeavyCheckResults {
  /** `quick_check`'s answer: 'ok' or the problems joined with '; '. */
  quick: Outcome<string>;
  audit: Outcome<VerifyAuditResult>;
}

export interface HeavyCheckRun {
  /** The results; rejects with TYRUM_ERR_INTERNAL if the worker died, TYRUM_ERR_INVALID_STATE if stopped first. */
  readonly results: Promise<HeavyCheckResults>;
  /** End the worker now if it still runs (it first finishes a statement it is in; a result not yet taken is dropped); resolves once its thread has exited. */
  stop(): Promise<void>;
}

const FROM_SOURCES = import.meta.url.endsWith('.ts');

function startWorker(input: HeavyCheckInput): Worker {
  if (!FROM_SOURCES) return new Worker(new URL('./worker.js', import.meta.url), { workerData: input });
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./worker.ts', import.meta.url).href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: input });
}

/** Run the heavy checks of the database `db` on a new worker thread. */
export function runHeavyChecks(o: { db: HeavyCheckDb; checkpointPath: string; publicKey: KeyObject; maxErrors: number; test?: HeavyCheckTestHooks }): HeavyCheckRun {
  const flag = o.test?.holdAfterRows !== undefined ? new SharedArrayBuffer(4) : undefined;
  const release = () => {
    if (flag) {
      const f = new Int32Array(flag);
      Atomics.store(f, 0, 1);
      Atomics.notify(f, 0);
    }
  };
  const input: HeavyCheckInput = {
    db: o.db,
    checkpointPath: o.checkpointPath,
    publicKey: o.publicKey.export({ format: 'der', type: 'spki' }).toString('base64url'),
    maxErrors: o.maxErrors,
    ...(o.test ? { test: { ...(o.test.crash !== undefined ? { crash: o.test.crash } : {}), ...(o.test.holdAfterRows !== undefined ? { holdAfterRows: o.test.holdAfterRows } : {}), ...(flag ? { flag } : {}) } } : {}),
  };
  const worker = startWorker(input);
  let settled = false;
  let failure: Error | null = null;
  let resolveResults!: (r: HeavyCheckResults) => void;
  let rejectResults!: (e: unknown) => void;
  const results = new Promise<HeavyCheckResults>((res, rej) => {
    resolveResults = res;
    rejectResults = rej;
  });
  // Whoever awaits it handles a rejection; never an unhandled one if nobody does.
  results.catch(() => undefined);
  const settle = (fn: () => void) => {
    if (settled) return;
    settled = true;
    fn();
  };
  worker.on('message', (m: { kind: 'holding' } | { kind: 'result'; results: HeavyCheckResults }) => {
    if (m.kind === 'holding') o.test?.onHold?.(release);
    else settle(() => resolveResults(m.results));
  });
  worker.on('error', (e) => {
    failure = e;
  });
  const exited = new Promise<void>((done) =>
    worker.once('exit', (code) => {
      settle(() => rejectResults(new TyrumError('TYRUM_ERR_INTERNAL', `the doctor's worker thread ended (exit code ${code}) before it reported: ${failure?.message ?? 'no error reported'}`)));
      done();
    }),
  );
  return {
    results,
    stop: () => {
      // Settled first: a result the worker posts while it is being ended is not taken.
      settle(() => rejectResults(new TyrumError('TYRUM_ERR_INVALID_STATE', 'the gateway is closing: the doctor checks were stopped before they finished')));
      release();
      void worker.terminate();
      return exited;
    },
  };
}
