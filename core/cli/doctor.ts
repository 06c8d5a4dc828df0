/**
 * `tyrum doctor`: checks a gateway home the way an operator would before trusting it —
 * permissions, configuration, database pragmas and integrity, the gateway key, the port, and
 * the audit chain. Never creates anything: a missing home is reported, not made.
 */
import { existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolveHome, homePaths, loadConfig, type Config } from '../config/index.js';
import { openStore, assertPragmas, type Store } from '../store/index.js';
import { loadGatewayKey, type GatewayKey } from '../auth/gateway-key.js';
import { verifyAudit } from '../audit/index.js';
import { parse } from './args.js';
import type { Io } from './io.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** Runs every check; exit 1 when any fails. */
export async function doctor(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) {
    io.out('usage: tyrum doctor [--home DIR] [--json]');
    return 0;
  }
  const home = resolveHome(values.home);
  const paths = homePaths(home);
  const checks: Check[] = [];
  const add = (name: string, fn: () => string) => {
    try {
      checks.push({ name, ok: true, detail: fn() });
    } catch (e) {
      checks.push({ name, ok: false, detail: (e as Error).message });
    }
  };

  add('home', () => {
    if (!existsSync(home)) throw new Error(`${home} does not exist (run \`tyrum start\` once to create it)`);
    const mode = statSync(home).mode & 0o777;
    if ((mode & 0o077) !== 0) throw new Error(`${home} has mode ${mode.toString(8)}; run: chmod 700 ${home}`);
    return `${home} (mode ${mode.toString(8)})`;
  });
  let config: Config | null = null;
  add('config', () => {
    config = loadConfig(home);
    return existsSync(paths.config) ? `${paths.config} valid` : 'no config.json; defaults in effect';
  });
  let store: Store | null = null;
  add('database', () => {
    if (!existsSync(paths.db)) throw new Error(`${paths.db} does not exist`);
    store = openStore(paths.db);
    const p = store.pragmas();
    assertPragmas(p);
    const integrity = store.integrityCheck();
    if (integrity !== 'ok') throw new Error(`integrity_check: ${integrity}`);
    return `journal_mode=${p.journal_mode} ${p.commit_sync === 'store' ? 'synchronous=NORMAL, each commit fdatasynced by the store' : 'synchronous=FULL'} foreign_keys=on integrity=ok schema=v${store.schemaVersion()}`;
  });
  let key: GatewayKey | null = null;
  add('gateway key', () => {
    key = loadGatewayKey(paths.gatewayKey);
    return `${paths.gatewayKey} (id ${key.keyId}, mode 600)`;
  });
  add('audit chain', () => {
    if (!store || !key) throw new Error('skipped: database or key unavailable');
    const r = verifyAudit({ store, verifier: key, checkpointPath: paths.auditCheckpoint });
    if (!r.ok) throw new Error(r.reason ?? 'verification failed');
    return `${r.entries} entries verify; checkpoint at ${r.checkpoint?.seq ?? 0}`;
  });
  (store as Store | null)?.close();

  const cfg = config as Config | null;
  if (cfg !== null) {
    const detail = await portCheck(cfg, (key as GatewayKey | null)?.keyId ?? null);
    checks.push({ name: 'port', ok: detail.ok, detail: detail.text });
  }

  if (values.json) io.out(JSON.stringify({ ok: checks.every((c) => c.ok), checks }));
  else for (const c of checks) io.out(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(12)} ${c.detail}`);
  return checks.every((c) => c.ok) ? 0 : 1;
}

/**
 * Is this home's gateway answering on the port (its /healthz names this home's key id), another
 * Tyrum gateway, something else, or is the port free?
 */
async function portCheck(cfg: Config, keyId: string | null): Promise<{ ok: boolean; text: string }> {
  const scheme = cfg.tls ? 'https' : 'http';
  const host = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
  const where = `${cfg.host}:${cfg.port}`;
  try {
    const res = await fetch(`${scheme}://${host}:${cfg.port}/healthz`, { signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { status?: string; version?: string; key_id?: unknown };
    if (body.status === 'ok') {
      const version = body.version ?? '';
      if (keyId !== null && body.key_id === keyId) return { ok: true, text: `gateway ${version} running on ${where}` };
      if (keyId === null) return { ok: false, text: `a Tyrum gateway ${version} answers on ${where}, but this home's gateway key is unavailable to tell whether it is this home's` };
      const theirs = typeof body.key_id === 'string' ? `key id ${body.key_id}` : 'no key id';
      return { ok: false, text: `another Tyrum gateway ${version} (${theirs}; this home's is ${keyId}) answers on ${where}: it is not this home's gateway, and this home's cannot start on that port` };
    }
  } catch {
    // Nothing answering over HTTP: see whether the port is free.
  }
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, text: `${where} is in use by something that is not a Tyrum gateway (${e.code ?? e.message})` }));
    srv.listen(cfg.port, cfg.host, () => srv.close(() => resolve({ ok: true, text: `${where} is free (gateway not running)` })));
  });
}
