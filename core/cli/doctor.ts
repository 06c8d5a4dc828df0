/**
 * `tyrum doctor`: checks a gateway home the way an operator would before trusting it —
 * permissions, configuration, database pragmas and integrity, the gateway key, the port, and
 * the audit chain. Never creates anything: a missing home is reported, not made.
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolveHome, homePaths, type Config } from '../config/index.js';
import { openStore, type Store } from '../store/index.js';
import { homeCheck, configCheck, databaseCheck, gatewayKeyCheck, auditCheck, skipped, type DoctorCheck } from '../doctor/checks.js';
import { openConfiguredStore } from '../home.js';
import { parse } from './args.js';
import type { Io } from './io.js';

/** Runs every check; exit 1 when any fails. */
export async function doctor(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) {
    io.out('usage: tyrum doctor [--home DIR] [--json]');
    return 0;
  }
  const home = resolveHome(values.home);
  const paths = homePaths(home);
  const checks: DoctorCheck[] = [homeCheck(home)];
  const cfg = configCheck(home, paths);
  checks.push(cfg.check);
  let store: Store | null = null;
  const pg = (cfg.config as Config | null)?.store.kind === 'postgres';
  if (!pg && !existsSync(paths.db)) checks.push({ name: 'database', status: 'fail', detail: `${paths.db} does not exist` });
  else {
    try {
      // PostgreSQL: the configured server (opening migrates a new database, as a gateway start would).
      store = pg ? openConfiguredStore(cfg.config as Config, paths) : openStore(paths.db);
      checks.push(databaseCheck(store, 'full'));
    } catch (e) {
      checks.push({ name: 'database', status: 'fail', detail: (e as Error).message });
    }
  }
  const key = gatewayKeyCheck(paths);
  checks.push(key.check);
  // The CLI fails what it cannot check (a gateway's doctor.run only warns: it is running).
  if (!store || !key.key) checks.push({ ...skipped('audit chain', 'database or key unavailable'), status: 'fail' });
  else checks.push(auditCheck(store, key.key, paths.auditCheckpoint));
  (store as Store | null)?.close();

  const config = cfg.config as Config | null;
  if (config !== null) {
    const detail = await portCheck(config, key.key?.keyId ?? null);
    checks.push({ name: 'port', status: detail.ok ? 'ok' : 'fail', detail: detail.text });
  }

  const ok = checks.every((c) => c.status !== 'fail');
  if (values.json) io.out(JSON.stringify({ ok, checks: checks.map((c) => ({ name: c.name, ok: c.status !== 'fail', status: c.status, detail: c.detail })) }));
  else for (const c of checks) io.out(`${c.status === 'ok' ? 'ok  ' : c.status === 'warn' ? 'warn' : 'FAIL'}  ${c.name.padEnd(12)} ${c.detail}`);
  return ok ? 0 : 1;
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
