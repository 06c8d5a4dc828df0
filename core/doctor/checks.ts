/**
 * The checks of `tyrum doctor`, shared by the CLI (which opens the home itself) and the running
 * gateway's `doctor.run` operation (which checks its own home with its open store and key): home
 * permissions, configuration, database pragmas and integrity, the gateway key file, the audit
 * chain and its signed checkpoint. Each check reads; none creates or repairs anything.
 */
import { existsSync, statSync } from 'node:fs';
import { loadConfig, type Config, type homePaths } from '../config/index.js';
import { assertPragmas, type Store } from '../store/index.js';
import { loadGatewayKey, type GatewayKey } from '../auth/gateway-key.js';
import { verifyAudit, type CheckpointVerifier } from '../audit/index.js';

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
  return check('database', () => {
    // PostgreSQL: openPgStore refused the store unless synchronous_commit, fsync and
    // full_page_writes are on; page-level integrity is the server's (amcheck is not run here).
    if (store.dialect === 'postgres') return `PostgreSQL: synchronous_commit, fsync and full_page_writes on (checked at open); schema=v${store.schemaVersion()}; no integrity scan (the server's own checks apply)`;
    const p = store.pragmas();
    assertPragmas(p);
    const problems = store.integrityCheck(integrity, maxErrors);
    if (problems !== 'ok') throw new Error(`${integrity === 'full' ? 'integrity_check' : 'quick_check'}: ${problems}`);
    return `journal_mode=${p.journal_mode} ${p.commit_sync === 'store' ? 'synchronous=NORMAL, each commit fdatasynced by the store' : 'synchronous=FULL'} foreign_keys=on ${integrity === 'full' ? 'integrity_check' : 'quick_check'}=ok schema=v${store.schemaVersion()}`;
  });
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
  return check('audit chain', () => {
    const r = verifyAudit({ store, verifier, checkpointPath });
    if (!r.ok) throw new Error(r.reason ?? 'verification failed');
    return `${r.entries} entries verify; checkpoint at ${r.checkpoint?.seq ?? 0}${r.checkpoint ? ` (signed ${r.checkpoint.ts})` : ''}`;
  });
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  checked_at: string;
}

/**
 * Reports made within this long of the last one are that one: doctor.run reads the whole database
 * on the event loop (quick_check and the audit chain: about 1.5 s at 100,000 audit entries, during
 * which the gateway serves nothing), so callers get at most one fresh report a minute and see
 * when it was made in `checked_at`.
 */
export const DOCTOR_REUSE_MS = 60_000;

/**
 * The running gateway's doctor (the `doctor.run` operation): the CLI's checks of its own home
 * with its open store and key, SQLite's cheaper quick_check rather than integrity_check (the
 * gateway is serving meanwhile), no port check (it is the gateway on the port), and installed
 * plugins that cannot be enabled as things stand. A report younger than {@link DOCTOR_REUSE_MS}
 * is returned again, so repeated calls cannot keep the event loop walking the database.
 *
 * One at a time: `before` (the gateway's audit flush) runs first, and a call made while a check
 * is in flight waits for that check and gets its report rather than starting another.
 */
export function gatewayDoctor(o: {
  home: string;
  paths: HomePaths;
  store: Store;
  verifier: CheckpointVerifier;
  plugins: () => Array<{ id: string; state: 'enabled' | 'disabled'; blockers: string[]; pending_upgrade: { from_version: string; to_version: string } | null }>;
  /** Runs before a fresh check (the gateway flushes its audit queue so the chain checked includes it). */
  before?: () => Promise<void>;
  now?: () => number;
}): () => Promise<DoctorReport> {
  const now = o.now ?? Date.now;
  let last: { at: number; report: DoctorReport } | null = null;
  let inFlight: Promise<DoctorReport> | null = null;
  const fresh = (): DoctorReport => {
    const at = now();
    const checks: DoctorCheck[] = [homeCheck(o.home), configCheck(o.home, o.paths).check, databaseCheck(o.store, 'quick'), gatewayKeyCheck(o.paths).check, auditCheck(o.store, o.verifier, o.paths.auditCheckpoint), pluginsCheck(o.plugins())];
    const report: DoctorReport = { ok: checks.every((c) => c.status !== 'fail'), checks, checked_at: new Date(at).toISOString() };
    last = { at, report };
    return report;
  };
  return () => {
    if (inFlight) return inFlight;
    const at = now();
    if (last && at - last.at < DOCTOR_REUSE_MS && at >= last.at) return Promise.resolve(last.report);
    const p = (async () => {
      if (o.before) await o.before();
      return fresh();
    })();
    inFlight = p;
    const done = () => {
      if (inFlight === p) inFlight = null;
    };
    p.then(done, done);
    return p;
  };
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
