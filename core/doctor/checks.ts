/**
 * The checks of `tyrum doctor`, shared by the CLI (which opens the home itself) and the running
 * gateway's `doctor.run` operation (which checks its own home with its open store and key): home
 * permissions, configuration, database pragmas and integrity, the gateway key file, the audit
 * chain and its signed checkpoint. Each check reads; none creates or repairs anything.
 *
 * The CLI runs every check in-process, on its own connection: it is a short-lived process with
 * nothing else to serve, and it keeps its full integrity_check. The gateway runs the two that
 * read the whole database (quick_check, the audit chain) on a worker thread (offload.ts), with
 * the same code and the same verdicts, so its event loop keeps serving.
 */
import { existsSync, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { loadConfig, type Config, type homePaths } from '../config/index.js';
import { assertPragmas, type Store } from '../store/index.js';
import { loadGatewayKey, type GatewayKey } from '../auth/gateway-key.js';
import { verifyAudit, type CheckpointVerifier, type VerifyAuditResult } from '../audit/index.js';
import { TyrumError } from '../errors/index.js';
import { runHeavyChecks, type HeavyCheckDb, type HeavyCheckResults, type HeavyCheckRun, type HeavyCheckTestHooks } from './offload.js';

type HomePaths = ReturnType<typeof homePaths>;

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
}

/** Runs `fn` as the check `name`: what it returns is the ok detail, what it throws the failure. */
export function check(name: string, fn: () => string): DoctorCheck {
  try {
    return { name, status: 'ok', detail: fn() };
  } catch (e) {
    return { name, status: 'fail', detail: (e as Error).message };
  }
}

/** A check that could not run because one it depends on failed. */
export function skipped(name: string, because: string): DoctorCheck {
  return { name, status: 'warn', detail: `skipped: ${because}` };
}

/** The home directory exists and is closed to group and others. */
export function homeCheck(home: string): DoctorCheck {
  return check('home', () => {
    if (!existsSync(home)) throw new Error(`${home} does not exist (run \`tyrum start\` once to create it)`);
    const mode = statSync(home).mode & 0o777;
    if ((mode & 0o077) !== 0) throw new Error(`${home} has mode ${mode.toString(8)}; run: chmod 700 ${home}`);
    return `${home} (mode ${mode.toString(8)})`;
  });
}

/** config.json parses and validates as it would at start (re-read now: it may have changed since). */
export function configCheck(home: string, paths: HomePaths): { check: DoctorCheck; config: Config | null } {
  let config: Config | null = null;
  const c = check('config', () => {
    config = loadConfig(home);
    return existsSync(paths.config) ? `${paths.config} valid` : 'no config.json; defaults in effect';
  });
  return { check: c, config };
}

/**
 * The database's pragmas are the ones the store needs, and SQLite finds it sound. `integrity`
 * chooses the depth: `full` is `PRAGMA integrity_check` (also checks every index against its
 * table; the CLI's choice), `quick` is `PRAGMA quick_check` (the same walk without the index
 * cross-check: still reads every page, so it is O(database size), but much cheaper). At most
 * `maxErrors` problems are reported.
 */
export function databaseCheck(store: Store, integrity: 'full' | 'quick', maxErrors = 10): DoctorCheck {
  return check('database', () => databaseVerdict(store, integrity, () => store.integrityCheck(integrity, maxErrors)));
}

/**
 * The database check's verdict: the pragmas read from `store` (per connection: they must be the
 * writer's), then `problems` (SQLite's answer, 'ok' or the problems; it may throw). Its detail, or
 * a throw with the failure.
 */
function databaseVerdict(store: Store, integrity: 'full' | 'quick', problems: () => string): string {
  // PostgreSQL: openPgStore refused the store unless synchronous_commit, fsync and
  // full_page_writes are on; page-level integrity is the server's (amcheck is not run here).
  if (store.dialect === 'postgres') return `PostgreSQL: synchronous_commit, fsync and full_page_writes on (checked at open); schema=v${store.schemaVersion()}; no integrity scan (the server's own checks apply)`;
  const p = store.pragmas();
  assertPragmas(p);
  const found = problems();
  if (found !== 'ok') throw new Error(`${integrity === 'full' ? 'integrity_check' : 'quick_check'}: ${found}`);
  return `journal_mode=${p.journal_mode} ${p.commit_sync === 'store' ? 'synchronous=NORMAL, each commit fdatasynced by the store' : 'synchronous=FULL'} foreign_keys=on ${integrity === 'full' ? 'integrity_check' : 'quick_check'}=ok schema=v${store.schemaVersion()}`;
}

/** The gateway key file is present, closed to group and others, and an Ed25519 key. */
export function gatewayKeyCheck(paths: HomePaths): { check: DoctorCheck; key: GatewayKey | null } {
  let key: GatewayKey | null = null;
  const c = check('gateway key', () => {
    key = loadGatewayKey(paths.gatewayKey);
    return `${paths.gatewayKey} (id ${key.keyId}, mode 600)`;
  });
  return { check: c, key };
}

/** The audit chain verifies up to its head and extends the signed checkpoint. */
export function auditCheck(store: Store, verifier: CheckpointVerifier, checkpointPath: string): DoctorCheck {
  return check('audit chain', () => auditVerdict(verifyAudit({ store, verifier, checkpointPath })));
}

/** The audit check's detail for a verification result, or a throw with why it failed. */
function auditVerdict(r: VerifyAuditResult): string {
  if (!r.ok) throw new Error(r.reason ?? 'verification failed');
  return `${r.entries} entries verify; checkpoint at ${r.checkpoint?.seq ?? 0}${r.checkpoint ? ` (signed ${r.checkpoint.ts})` : ''}`;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  checked_at: string;
}

/**
 * Reports made within this long of the last one are that one: a fresh report reads the whole
 * database (quick_check and the audit chain: about 1.5 s at 100,000 audit entries, on a worker
 * thread, so the gateway keeps serving, but it is still a full read of the database), so callers
 * get at most one fresh report a minute and see when it was made in `checked_at`.
 */
export const DOCTOR_REUSE_MS = 60_000;

/** The running gateway's doctor: `run` is the doctor.run operation, `close` ends a check in flight. */
export interface GatewayDoctor {
  run(): Promise<DoctorReport>;
  /**
   * Stop a check in flight (its caller gets TYRUM_ERR_INVALID_STATE) and refuse new ones;
   * resolves once the worker thread has exited and closed its connection to the database.
   */
  close(): Promise<void>;
}

/**
 * The running gateway's doctor (the `doctor.run` operation): the CLI's checks of its own home
 * with its open store and key, SQLite's cheaper quick_check rather than integrity_check, no port
 * check (it is the gateway on the port), and installed plugins that cannot be enabled as things
 * stand. quick_check and the audit chain walk run on a worker thread with its own read-only
 * connection (core/doctor/offload.ts), so the gateway's event loop keeps serving meanwhile; the
 * cheap checks (home, config, pragmas, key file, plugins) run here. A report younger than
 * {@link DOCTOR_REUSE_MS} is returned again.
 *
 * One at a time: `before` (the gateway's audit flush) runs first, and a call made while a check
 * is in flight waits for that check and gets its report rather than starting another. A worker
 * that dies rejects the call with TYRUM_ERR_INTERNAL; `close` with TYRUM_ERR_INVALID_STATE.
 */
export function gatewayDoctor(o: {
  home: string;
  paths: HomePaths;
  store: Store;
  /** The configured store (config.store): the worker opens its own connection to it. SQLite when omitted. */
  storeSettings?: Config['store'];
  /** The gateway's key: only its public half goes to the worker, which verifies the checkpoint with it. */
  key: { publicKey: KeyObject };
  plugins: () => Array<{ id: string; state: 'enabled' | 'disabled'; blockers: string[]; pending_upgrade: { from_version: string; to_version: string } | null }>;
  /** Runs before a fresh check (the gateway flushes its audit queue so the chain checked includes it). */
  before?: () => Promise<void>;
  now?: () => number;
  /** TEST ONLY: hooks into the worker (core/doctor/offload.ts). */
  test?: HeavyCheckTestHooks;
}): GatewayDoctor {
  const now = o.now ?? Date.now;
  let last: { at: number; report: DoctorReport } | null = null;
  let inFlight: Promise<DoctorReport> | null = null;
  let worker: HeavyCheckRun | null = null;
  let closed = false;
  const closedError = () => new TyrumError('TYRUM_ERR_INVALID_STATE', 'the gateway is closing: no doctor checks now');
  const fresh = async (): Promise<DoctorReport> => {
    if (o.before) await o.before();
    if (closed) throw closedError();
    const at = now();
    const run = runHeavyChecks({ db: heavyDb(o.storeSettings, o.paths), checkpointPath: o.paths.auditCheckpoint, publicKey: o.key.publicKey, maxErrors: 10, ...(o.test ? { test: o.test } : {}) });
    // Kept after it answered: close() also waits for a thread that has reported but not yet exited.
    worker = run;
    const heavy: HeavyCheckResults = await run.results;
    const unwrap = <T>(r: { ok: true; value: T } | { ok: false; message: string }): T => {
      if (!r.ok) throw new Error(r.message);
      return r.value;
    };
    const checks: DoctorCheck[] = [
      homeCheck(o.home),
      configCheck(o.home, o.paths).check,
      check('database', () => databaseVerdict(o.store, 'quick', () => unwrap(heavy.quick))),
      gatewayKeyCheck(o.paths).check,
      check('audit chain', () => auditVerdict(unwrap(heavy.audit))),
      pluginsCheck(o.plugins()),
    ];
    const report: DoctorReport = { ok: checks.every((c) => c.status !== 'fail'), checks, checked_at: new Date(at).toISOString() };
    last = { at, report };
    return report;
  };
  return {
    run: () => {
      if (closed) return Promise.reject(closedError());
      if (inFlight) return inFlight;
      const at = now();
      if (last && at - last.at < DOCTOR_REUSE_MS && at >= last.at) return Promise.resolve(last.report);
      const p = fresh();
      inFlight = p;
      const done = () => {
        if (inFlight === p) inFlight = null;
      };
      p.then(done, done);
      return p;
    },
    close: async () => {
      closed = true;
      const w = worker;
      if (w) await w.stop();
    },
  };
}

function heavyDb(settings: Config['store'] | undefined, paths: HomePaths): HeavyCheckDb {
  if (settings?.kind === 'postgres') return { kind: 'postgres', url: settings.url(), timeoutMs: settings.statementTimeoutMs, connectTimeoutMs: settings.connectTimeoutMs };
  return { kind: 'sqlite', path: paths.db };
}

/** Installed plugins: a warning names each that waits for the operator (an upgrade to review, a grant, a risk). */
function pluginsCheck(list: Array<{ id: string; state: 'enabled' | 'disabled'; blockers: string[]; pending_upgrade: { from_version: string; to_version: string } | null }>): DoctorCheck {
  const enabled = list.filter((p) => p.state === 'enabled').length;
  const upgrades = list.filter((p) => p.pending_upgrade).map((p) => `${p.id} (upgrade ${p.pending_upgrade!.from_version} → ${p.pending_upgrade!.to_version} to review)`);
  const blocked = list.filter((p) => p.state === 'disabled' && !p.pending_upgrade && p.blockers.length > 0).map((p) => `${p.id} (${p.blockers[0]})`);
  const base = `${list.length} installed, ${enabled} enabled`;
  if (upgrades.length === 0 && blocked.length === 0) return { name: 'plugins', status: 'ok', detail: base };
  return { name: 'plugins', status: 'warn', detail: `${base}; waiting for you: ${[...upgrades, ...blocked].join(', ')}` };
}
