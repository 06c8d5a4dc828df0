/**
 * The worker thread behind the running gateway's doctor (core/doctor/offload.ts): the two checks
 * that read the whole database, SQLite's `quick_check` and the audit chain walk against the signed
 * checkpoint, on a read-only connection of its own, so the gateway's event loop keeps serving.
 *
 * The connection is opened through core/store (openStore, read-only: no migration, no writes) and
 * the walk is core/audit's verifyAudit, the code the CLI runs in-process: the results are the
 * same, except that this connection sees committed data only (WAL lets it read beside the
 * gateway's writer; the gateway flushes its audit queue before it starts this worker). It holds
 * the gateway's public key only, never the private one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createRepos, openStore, type AuditRow } from '../store/index.js';
import { openPgDb } from '../store/pg/db.js';
import { verifyAudit } from '../audit/verify.js';
import { publicKeyVerifier } from '../auth/gateway-key.js';
import type { HeavyCheckResults, HeavyCheckInput } from './offload.js';

const input = workerData as HeavyCheckInput;
const port = parentPort!;

/** TEST ONLY: waits (blocking this thread) until the gateway sets the shared flag. */
function hold(): void {
  const flag = new Int32Array(input.test!.flag!);
  port.postMessage({ kind: 'holding' });
  while (Atomics.load(flag, 0) === 0) Atomics.wait(flag, 0, 0, 1000);
}

/** The rows and the integrity check of the database named in the input, and how to let it go. */
interface Source {
  audit: { iterate(): Iterable<AuditRow> };
  /** SQLite's quick_check; PostgreSQL has no equivalent here (the doctor reports the server's checks apply). */
  quick(): string;
  close(): void;
}

function openSource(): Source {
  const db = input.db;
  if (db.kind === 'postgres') {
    const pg = openPgDb(db.url, { readonly: true, autocommit: true, timeoutMs: db.timeoutMs, connectTimeoutMs: db.connectTimeoutMs });
    return { audit: createRepos(pg).audit, quick: () => 'ok', close: () => void pg.close() };
  }
  const store = openStore(db.path, { readonly: true });
  return { audit: store.audit, quick: () => store.integrityCheck('quick', input.maxErrors), close: () => store.close() };
}

function run(): HeavyCheckResults {
  if (input.test?.crash === true) process.exit(70);
  let source: Source;
  try {
    source = openSource();
  } catch (e) {
    const where = input.db.kind === 'sqlite' ? input.db.path : 'the PostgreSQL store';
    const message = `cannot open ${where} read-only: ${(e as Error).message}`;
    return { quick: { ok: false, message }, audit: { ok: false, message } };
  }
  try {
    let quick: HeavyCheckResults['quick'];
    try {
      quick = { ok: true, value: source.quick() };
    } catch (e) {
      quick = { ok: false, message: (e as Error).message };
    }
    let audit: HeavyCheckResults['audit'];
    try {
      const holdAfter = input.test?.holdAfterRows;
      const rows = holdAfter === undefined ? source : { audit: { iterate: () => heldRows(source.audit.iterate(), holdAfter) } };
      audit = { ok: true, value: verifyAudit({ store: rows, verifier: publicKeyVerifier(input.publicKey), checkpointPath: input.checkpointPath }) };
    } catch (e) {
      audit = { ok: false, message: (e as Error).message };
    }
    return { quick, audit };
  } finally {
    source.close();
  }
}

function* heldRows(rows: Iterable<AuditRow>, after: number): Generator<AuditRow> {
  let n = 0;
  for (const row of rows) {
    if (n++ === after) hold();
    yield row;
  }
}

port.postMessage({ kind: 'result', results: run() });
