/**
 * Gateway configuration: the home directory, `<home>/config.json` (validated against the
 * `config.gateway` contract, unknown keys rejected with their path), CLI overrides, and the
 * named limits with their defaults. The result is frozen.
 */
import { readFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { isIP } from 'node:net';
import { createPublicKey } from 'node:crypto';
import { GatewayConfig as GatewayConfigSchema } from '../../schemas/index.js';
import { validate } from '../protocol/validate.js';
import { TyrumError } from '../errors/index.js';
import { DEFAULT_CHECKPOINT_ENTRIES, DEFAULT_CHECKPOINT_INTERVAL_MS } from '../audit/log.js';
import { DEFAULT_PORT, DEFAULT_HOST, homePaths } from './home.js';

export { DEFAULT_PORT, DEFAULT_HOST, homePaths, resolveHome, ensureHome } from './home.js';

/** Named limits; see the `config.gateway` contract for what each bounds. */
export interface Limits {
  maxFrameBytes: number;
  maxQueuedBytes: number;
  handshakeTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxJsonDepth: number;
  maxJsonNodes: number;
  maxInflightRequests: number;
  maxConnections: number;
  maxPendingUpgrades: number;
  httpHeadersTimeoutMs: number;
  httpRequestTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  httpBodyLimitBytes: number;
  authFailureAuditPerMinute: number;
  /** The audit log signs its checkpoint at most this long after an entry is committed. */
  auditCheckpointIntervalMs: number;
  /** ... or as soon as this many entries are committed without one. */
  auditCheckpointEntries: number;
  /** A plugin's sandbox without calls for this long is evicted (started again by its next call). */
  sandboxIdleMs: number;
  /** Most plugin sandboxes live at once; starting one more evicts the least recently used idle one. */
  maxLiveSandboxes: number;
  /** User messages a conversation may hold waiting for a turn; more are refused (TYRUM_ERR_CONVERSATION_QUEUE_FULL). */
  maxPendingMessages: number;
  /** Agent turns worked on at once (each may wait on a model or an approval); more wait their turn. */
  maxConcurrentTurns: number;
  /** Largest artifact stored (TYRUM_ERR_ARTIFACT_TOO_LARGE beyond it). */
  maxArtifactBytes: number;
  /** Total bytes of stored artifacts (TYRUM_ERR_ARTIFACT_QUOTA beyond it). */
  maxArtifactsTotalBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxFrameBytes: 1024 * 1024,
  maxQueuedBytes: 4 * 1024 * 1024,
  handshakeTimeoutMs: 10_000,
  heartbeatIntervalMs: 30_000,
  maxJsonDepth: 64,
  maxJsonNodes: 100_000,
  maxInflightRequests: 64,
  maxConnections: 10_000,
  maxPendingUpgrades: 128,
  httpHeadersTimeoutMs: 10_000,
  httpRequestTimeoutMs: 30_000,
  httpKeepAliveTimeoutMs: 5_000,
  httpBodyLimitBytes: 1024 * 1024,
  authFailureAuditPerMinute: 30,
  auditCheckpointIntervalMs: DEFAULT_CHECKPOINT_INTERVAL_MS,
  auditCheckpointEntries: DEFAULT_CHECKPOINT_ENTRIES,
  sandboxIdleMs: 10 * 60_000,
  maxLiveSandboxes: 256,
  maxPendingMessages: 20,
  maxConcurrentTurns: 16,
  maxArtifactBytes: 64 * 1024 * 1024,
  maxArtifactsTotalBytes: 10 * 1024 * 1024 * 1024,
});

/** Retention (docs/retention.md): days to keep each category, null meaning forever. */
export interface Retention {
  runsDays: number | null;
  eventsDays: number | null;
  artifactsDays: number | null;
  conversationsDays: number | null;
  /** How often the gateway sweeps; null: only `tyrum gc` does. */
  sweepIntervalMs: number | null;
  /** Rows a sweep examines per transaction. */
  batchSize: number;
}

export const DEFAULT_RETENTION: Readonly<Retention> = Object.freeze({
  runsDays: 30,
  eventsDays: 7,
  artifactsDays: 30,
  conversationsDays: null,
  sweepIntervalMs: 3_600_000,
  batchSize: 500,
});

/** Tracing (docs/observability.md): off unless an OTLP endpoint is set. */
export interface Telemetry {
  /** OTLP/HTTP traces endpoint; null: tracing off, no OpenTelemetry code loaded. */
  readonly otlpEndpoint: string | null;
  readonly serviceName: string;
  /** Fraction of new root traces recorded. */
  readonly sampleRatio: number;
}

export const DEFAULT_TELEMETRY: Readonly<Telemetry> = Object.freeze({ otlpEndpoint: null, serviceName: 'tyrum-gateway', sampleRatio: 1 });

/**
 * The state store. SQLite (the default) lives in `<home>/tyrum.db`. PostgreSQL: `url()` returns
 * the connection URL, a function so that the URL (which may hold a password) is never part of
 * what a caller serializes or logs; `where` names host, port and database only.
 */
export type StoreSettings =
  | { readonly kind: 'sqlite' }
  | { readonly kind: 'postgres'; readonly url: () => string; readonly where: string; readonly statementTimeoutMs: number; readonly connectTimeoutMs: number };

export interface Config {
  readonly home: string;
  readonly host: string;
  readonly port: number;
  readonly allowedOrigins: readonly string[] | null;
  readonly trustedProxies: readonly string[];
  readonly tls: { readonly certFile: string; readonly keyFile: string } | null;
  readonly limits: Readonly<Limits>;
  /** Publishers whose signed plugins install; empty: unsigned plugins install too. */
  readonly trustedPublishers: readonly TrustedPublisher[];
  readonly retention: Readonly<Retention>;
  readonly telemetry: Readonly<Telemetry>;
  readonly store: StoreSettings;
}

/** A publisher whose Ed25519 key (SPKI DER, base64url) signs the plugins it ships. */
export interface TrustedPublisher {
  readonly name: string;
  readonly publicKey: string;
}

export interface ConfigOverrides {
  host?: string;
  port?: number;
}

function camelLimits(raw: Record<string, number | undefined>): Partial<Limits> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) out[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = v;
  return out as Partial<Limits>;
}

/** Loads and validates `<home>/config.json` (absent means all defaults), then applies overrides. */
export function loadConfig(home: string, overrides: ConfigOverrides = {}): Config {
  const path = homePaths(home).config;
  let raw: unknown = {};
  if (existsSync(path)) {
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `${path}: not valid JSON: ${(e as Error).message}`);
    }
  }
  return buildConfig(home, raw, overrides, path);
}

/** Validates a raw config object; `source` names it in errors. */
export function buildConfig(home: string, raw: unknown, overrides: ConfigOverrides = {}, source = 'config'): Config {
  const issues = validate(GatewayConfigSchema, raw);
  if (issues.length > 0) {
    throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `${source}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
  }
  const file = raw as {
    host?: string;
    port?: number;
    allowed_origins?: string[];
    trusted_proxies?: string[];
    tls?: { cert_file: string; key_file: string };
    limits?: Record<string, number | undefined>;
    trusted_publishers?: Array<{ name: string; public_key: string }>;
    retention?: Record<string, number | null | undefined>;
    telemetry?: { otlp_endpoint?: string; service_name?: string; sample_ratio?: number };
    store?: StoreFile;
  };
  const cfg: Config = {
    home,
    host: overrides.host ?? file.host ?? DEFAULT_HOST,
    port: overrides.port ?? file.port ?? DEFAULT_PORT,
    allowedOrigins: file.allowed_origins ?? null,
    trustedProxies: file.trusted_proxies ?? [],
    tls: file.tls ? { certFile: resolve(home, file.tls.cert_file), keyFile: resolve(home, file.tls.key_file) } : null,
    limits: Object.freeze({ ...DEFAULT_LIMITS, ...camelLimits(file.limits ?? {}) }),
    trustedPublishers: Object.freeze((file.trusted_publishers ?? []).map((p) => Object.freeze({ name: p.name, publicKey: p.public_key }))),
    retention: retentionOf(file.retention ?? {}, source),
    telemetry: telemetryOf(file.telemetry ?? {}, source),
    store: storeOf(file.store ?? { kind: 'sqlite' }, source),
  };
  assertSafeBind(cfg);
  cfg.trustedPublishers.forEach((p, i) => {
    if (!isEd25519PublicKey(p.publicKey)) {
      throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `${source}: /trusted_publishers/${i}/public_key: not an Ed25519 public key (SPKI DER, base64url, as printed by tyrum plugin keygen)`);
    }
  });
  return Object.freeze(cfg);
}

/** The retention section over its defaults; events may not outlive the runs they describe. */
function retentionOf(raw: Record<string, number | null | undefined>, source: string): Readonly<Retention> {
  const r: Retention = { ...DEFAULT_RETENTION };
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    (r as unknown as Record<string, number | null>)[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = v;
  }
  if (r.runsDays !== null && (r.eventsDays === null || r.eventsDays > r.runsDays)) {
    throw new TyrumError(
      'TYRUM_ERR_INVALID_CONFIG',
      `${source}: /retention/events_days: must be at most runs_days (${r.runsDays}): a removed run's events would outlive it (got ${r.eventsDays === null ? 'null, keep forever' : r.eventsDays})`,
    );
  }
  return Object.freeze(r);
}

export interface StoreFile {
  kind: 'sqlite' | 'postgres';
  url?: string;
  url_env?: string;
  pool?: { statement_timeout_ms?: number; connect_timeout_ms?: number };
}

/**
 * The store section. A PostgreSQL URL comes from `url` or from the variable `url_env` names (read
 * now); it must parse as a postgres:// URL. No message quotes it: it may hold a password.
 */
export function storeOf(raw: StoreFile, source: string, env: NodeJS.ProcessEnv = process.env): StoreSettings {
  const bad = (path: string, why: string): TyrumError => new TyrumError('TYRUM_ERR_INVALID_CONFIG', `${source}: /store${path}: ${why}`);
  if (raw.kind === 'sqlite') {
    for (const k of ['url', 'url_env', 'pool'] as const) if (raw[k] !== undefined) throw bad(`/${k}`, 'only for kind "postgres"');
    return Object.freeze({ kind: 'sqlite' });
  }
  if ((raw.url === undefined) === (raw.url_env === undefined)) throw bad('', 'kind "postgres" needs exactly one of url and url_env');
  let url: string;
  if (raw.url_env !== undefined) {
    const v = env[raw.url_env];
    if (v === undefined || v === '') throw bad('/url_env', `the environment variable ${raw.url_env} is not set`);
    url = v;
  } else url = raw.url!;
  const where = raw.url_env !== undefined ? `/url_env (${raw.url_env})` : '/url';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad(where, 'not a URL (postgres://user:password@host:port/database); the value is not shown, it may hold a password');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') throw bad(where, `not a postgres:// URL (scheme ${JSON.stringify(parsed.protocol.slice(0, 20))})`);
  const name = `${parsed.hostname}${parsed.port ? `:${parsed.port}` : ''}${parsed.pathname}`;
  return Object.freeze({
    kind: 'postgres',
    url: () => url,
    where: name,
    statementTimeoutMs: raw.pool?.statement_timeout_ms ?? 30_000,
    connectTimeoutMs: raw.pool?.connect_timeout_ms ?? 10_000,
  });
}

/** The telemetry section over its defaults; the endpoint must be a URL fetch can use. */
function telemetryOf(raw: { otlp_endpoint?: string; service_name?: string; sample_ratio?: number }, source: string): Readonly<Telemetry> {
  if (raw.otlp_endpoint !== undefined) {
    let problem: string | null = null;
    try {
      const u = new URL(raw.otlp_endpoint);
      // Credentials are never echoed back (the message may end up in a log).
      if (u.username !== '' || u.password !== '') problem = 'it holds credentials (user:password@); put them in a collector next to the gateway';
      else if (u.protocol !== 'http:' && u.protocol !== 'https:') problem = `got ${JSON.stringify(raw.otlp_endpoint.slice(0, 100))}`;
    } catch {
      problem = `got ${JSON.stringify(raw.otlp_endpoint.slice(0, 100))}`;
    }
    if (problem !== null) throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `${source}: /telemetry/otlp_endpoint: not an http(s) URL without credentials: ${problem}`);
  }
  return Object.freeze({
    otlpEndpoint: raw.otlp_endpoint ?? DEFAULT_TELEMETRY.otlpEndpoint,
    serviceName: raw.service_name ?? DEFAULT_TELEMETRY.serviceName,
    sampleRatio: raw.sample_ratio ?? DEFAULT_TELEMETRY.sampleRatio,
  });
}

function isEd25519PublicKey(b64url: string): boolean {
  try {
    return createPublicKey({ key: Buffer.from(b64url, 'base64url'), format: 'der', type: 'spki' }).asymmetricKeyType === 'ed25519';
  } catch {
    return false;
  }
}

/** True for 127.0.0.0/8, ::1 and "localhost". */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
}

/**
 * Secure by default: a non-loopback bind needs TLS or an explicit trusted-proxy list (the
 * operator says a TLS-terminating proxy sits in front). TESTPLAN F8.
 */
export function assertSafeBind(cfg: Pick<Config, 'host' | 'tls' | 'trustedProxies'>): void {
  if (isLoopback(cfg.host)) return;
  if (cfg.tls !== null || cfg.trustedProxies.length > 0) return;
  throw new TyrumError(
    'TYRUM_ERR_INVALID_CONFIG',
    `refusing to listen on non-loopback address ${cfg.host} without TLS: set "tls" (cert_file, key_file) or "trusted_proxies" in config.json, or bind 127.0.0.1`,
  );
}
