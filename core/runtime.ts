/**
 * The composition root: wires concrete pieces (store, key, audit, tokens, protocol handlers,
 * edge) into a running gateway. The CLI's `start` and the tests use this; nothing else
 * constructs these pieces together.
 */
import { ensureHome, homePaths, loadConfig, type Config, type ConfigOverrides } from './config/index.js';
import { openStore, type Store } from './store/index.js';
import { loadOrCreateGatewayKey, type GatewayKey } from './auth/gateway-key.js';
import { TokenService } from './auth/tokens.js';
import { AuditLog } from './audit/index.js';
import { createHandlers } from './protocol/handlers.js';
import { GatewayServer } from './gateway/server.js';
import { packageInfo } from './util/package-info.js';
import { SCOPES } from '../schemas/index.js';
import type { OperationType } from '../schemas/index.js';
import type { Peer } from './protocol/session.js';
import { TyrumError } from './errors/index.js';

type Handler = (payload: Record<string, unknown>, peer: Peer) => Promise<Record<string, unknown>>;

export interface StartOptions {
  home: string;
  overrides?: ConfigOverrides;
  /** Pino level, or false for silence (tests). Default 'info'. */
  logLevel?: string | false;
}

export interface RunningGateway {
  readonly config: Config;
  readonly port: number;
  /** ws://host:port/ws */
  readonly url: string;
  readonly home: string;
  /** The admin token created on first start (shown once), else null. */
  readonly bootstrapToken: string | null;
  readonly store: Store;
  readonly server: GatewayServer;
  readonly audit: AuditLog;
  readonly tokens: TokenService;
  readonly key: GatewayKey;
  close(): Promise<void>;
}

/** The core services of a gateway home, without the network edge (CLI commands use this). */
export interface HomeServices {
  config: Config;
  store: Store;
  key: GatewayKey;
  audit: AuditLog;
  tokens: TokenService;
  paths: ReturnType<typeof homePaths>;
  close(): Promise<void>;
}

/** Opens (creating on first use) a gateway home: directory, config, database, key, audit log. */
export function openHome(home: string, overrides: ConfigOverrides = {}): HomeServices {
  ensureHome(home);
  const config = loadConfig(home, overrides);
  const paths = homePaths(home);
  const store = openStore(paths.db);
  try {
    const key = loadOrCreateGatewayKey(paths.gatewayKey);
    const audit = new AuditLog({ store, signer: key, checkpointPath: paths.auditCheckpoint });
    const tokens = new TokenService(store);
    return {
      config,
      store,
      key,
      audit,
      tokens,
      paths,
      close: async () => {
        await audit.flush();
        audit.close();
        store.close();
      },
    };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** Starts a gateway on `home` and resolves once it is listening. */
export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const svc = openHome(options.home, options.overrides);
  const { store, key, audit, tokens, config } = svc;
  let bootstrapToken: string | null = null;
  try {
    if (!tokens.any()) {
      const created = await tokens.create({ scopes: [...SCOPES], roles: ['client'], label: 'bootstrap admin', createdBy: 'bootstrap' });
      bootstrapToken = created.token;
      await audit.append('token.created', { kind: 'bootstrap' }, { token_id: created.record.id, scopes: created.record.scopes, roles: created.record.roles, label: created.record.label, expires_at: null });
    }
    let server: GatewayServer | null = null;
    const handlers = createHandlers({
      store,
      tokens,
      audit,
      verifier: key,
      checkpointPath: svc.paths.auditCheckpoint,
      onTokenRevoked: (id) => server?.closeToken(id),
      now: Date.now,
    });
    server = new GatewayServer({
      config,
      store,
      tokens,
      audit,
      version: packageInfo().version,
      logLevel: options.logLevel ?? 'info',
      handle: (type: OperationType, payload, peer) => {
        const h = (handlers as Partial<Record<OperationType, Handler>>)[type];
        if (!h) throw new TyrumError('TYRUM_ERR_UNSUPPORTED_REQUEST', `no handler for ${type}`);
        return h(payload, peer);
      },
    });
    const port = await server.listen();
    await audit.append('gateway.started', { kind: 'gateway', key_id: key.keyId }, { host: config.host, port, version: packageInfo().version });
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const running: RunningGateway = {
      config,
      port,
      url: `${config.tls ? 'wss' : 'ws'}://${host}:${port}/ws`,
      home: options.home,
      bootstrapToken,
      store,
      server,
      audit,
      tokens,
      key,
      close: async () => {
        await server!.close();
        await audit.append('gateway.stopped', { kind: 'gateway', key_id: key.keyId }, {}).catch(() => undefined);
        await svc.close();
      },
    };
    return running;
  } catch (e) {
    await svc.close().catch(() => undefined);
    throw e;
  }
}
