/**
 * A gateway home's core services, without plugins, policy, MCP servers or the network edge:
 * config, database, gateway key, secrets, the audit log, tokens and approvals. The CLI's commands
 * on the home open just this when it is all they use (token, audit, secret, approvals list), so
 * they load no plugin, schema-compiling or sandbox code; runtime.ts's openHome builds the full
 * set of services on it.
 */
import { ensureHome, homePaths, loadConfig, type Config, type ConfigOverrides } from './config/index.js';
import { openPgStore, openStore, type Store } from './store/index.js';
import { loadOrCreateGatewayKey, type GatewayKey } from './auth/gateway-key.js';
import { TokenService } from './auth/tokens.js';
import { AuditLog } from './audit/index.js';
import { SecretStore, Redactor, loadSecretKey } from './secrets/index.js';
import { ApprovalService } from './approvals/index.js';
import { PairingService, policyAutoApprove } from './nodes/pairing.js';
import { contractOf } from './nodes/contracts.js';
import type { TyrumError } from './errors/index.js';

/** The core services of a gateway home. */
export interface HomeCore {
  config: Config;
  store: Store;
  key: GatewayKey;
  audit: AuditLog;
  tokens: TokenService;
  secrets: SecretStore;
  redactor: Redactor;
  approvals: ApprovalService;
  /** Node pairings (core/nodes/pairing.ts): requested by connecting nodes, decided by operators. */
  pairings: PairingService;
  paths: ReturnType<typeof homePaths>;
  close(): Promise<void>;
}

export interface OpenHomeOptions {
  /** Where plugin lifecycle events go (the running gateway publishes them). */
  emit?: (type: 'plugin.lifecycle', payload: Record<string, unknown>) => void;
  onPluginChange?: (pluginId: string) => void;
  /** MCP servers or approvals changed in this process. */
  onMcpChange?: () => void;
  /** A checkpoint the audit log signs off the call path (on its interval, or at close) failed. */
  onAuditCheckpointError?: (error: TyrumError) => void;
  /**
   * What to do when the audit log does not extend its signed checkpoint: 'refuse' (default:
   * throw TYRUM_ERR_AUDIT_TAMPERED before anything is changed), 'accept' (record the damage in
   * the signed checkpoint and go on; `tyrum start --accept-tampered-audit`), or 'inspect' (open
   * it anyway to read or verify it; appends are still refused).
   */
  tamperedAudit?: 'refuse' | 'accept' | 'inspect';
  /** Run WAL checkpoints on a worker thread (a long-running gateway; see core/store/checkpointer.ts). */
  checkpointer?: boolean;
}

/**
 * The state store the configuration names: SQLite at `<home>/tyrum.db` (the default), or
 * PostgreSQL at the configured URL (connected, durability checked, schema migrated).
 */
export function openConfiguredStore(config: Config, paths: ReturnType<typeof homePaths>): Store {
  const s = config.store;
  if (s.kind === 'sqlite') return openStore(paths.db);
  return openPgStore(s.url(), { timeoutMs: s.statementTimeoutMs, connectTimeoutMs: s.connectTimeoutMs });
}

/** Opens (creating on first use) a gateway home's core: directory, config, database, key, audit log. */
export function openHomeCore(home: string, overrides: ConfigOverrides = {}, opts: OpenHomeOptions = {}): HomeCore {
  ensureHome(home);
  const config = loadConfig(home, overrides);
  const paths = homePaths(home);
  // The checkpoint worker starts once the home is known good (below): a refused open (a tampered
  // audit log) then leaves no thread behind still holding the database.
  const store = openConfiguredStore(config, paths);
  try {
    const key = loadOrCreateGatewayKey(paths.gatewayKey);
    const secrets = new SecretStore(store, loadSecretKey(home));
    // Every audit entry passes the redactor: a secret value never reaches the log.
    const redactor = Redactor.fromSecrets(secrets);
    const audit = new AuditLog({
      store,
      signer: key,
      verifier: key,
      checkpointPath: paths.auditCheckpoint,
      redact: redactor.redactDeep,
      checkpointIntervalMs: config.limits.auditCheckpointIntervalMs,
      checkpointEntries: config.limits.auditCheckpointEntries,
      ...(opts.onAuditCheckpointError ? { onCheckpointError: opts.onAuditCheckpointError } : {}),
    });
    if (opts.tamperedAudit !== 'inspect') {
      const anchor = audit.checkAnchor();
      if (!anchor.ok) {
        if (opts.tamperedAudit !== 'accept') throw audit.tamperedError(anchor, { committed: false });
        audit.acceptTampered({ kind: 'gateway', key_id: key.keyId });
      }
    }
    const tokens = new TokenService(store);
    const approvals = new ApprovalService({ store, audit, redact: redactor.redactDeep });
    const pairings = new PairingService({ store, events: approvals.events, audit, knownCapability: (id, version) => contractOf(id, version) !== undefined, autoApprove: policyAutoApprove(store) });
    // WAL checkpoints are SQLite's; PostgreSQL's server does its own.
    if (opts.checkpointer === true && store.dialect === 'sqlite') store.attachCheckpointer(paths.db, {});
    return {
      config,
      store,
      key,
      audit,
      tokens,
      secrets,
      redactor,
      approvals,
      pairings,
      paths,
      close: async () => {
        // Commits what is queued and signs the last checkpoint; a checkpoint that cannot be
        // signed (say, a log tampered with while running) goes to onAuditCheckpointError and
        // is caught by the next start's check.
        audit.close();
        store.close();
        await store.whenClosed();
      },
    };
  } catch (e) {
    store.close();
    throw e;
  }
}
