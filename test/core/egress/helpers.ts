// Shared helpers for the egress tests: counting local HTTP servers, a secret store in a test
// home, rights builders and a recording egress handler.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { openStore, type Store } from '../../../core/store/index.js';
import { loadSecretKey, Redactor, SecretStore } from '../../../core/secrets/index.js';
import { createEgressHandler, type EgressOptions, type EgressRecord, type EgressRights } from '../../../core/egress/index.js';
import type { NormalizedEgress } from '../../../manifests/capabilities.js';
import type { EgressHandler, EgressRequest } from '../../../sandbox/index.js';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface TestServer {
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  requests: SeenRequest[];
  origin: string;
}

/** A real HTTP server on 127.0.0.1:0 that counts connections; closed at teardown. */
export async function startServer(t: Test, handler: (req: SeenRequest, res: ServerResponse, raw: IncomingMessage) => void): Promise<TestServer> {
  const state: TestServer = { port: 0, connections: 0, requests: [], origin: '' };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      state.requests.push(seen);
      handler(seen, res, req);
    });
  });
  server.on('connection', () => {
    state.connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.origin = `http://127.0.0.1:${state.port}`;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return state;
}

/** A server answering every request with `status`, `headers` and `body`. */
export function answer(status: number, body: string | Buffer = '', headers: Record<string, string> = {}) {
  return (_req: SeenRequest, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'text/plain', ...headers });
    res.end(body);
  };
}

/** An egress rule as EffectiveRights holds it. */
export function rule(host: string, port: number, methods: string[] = ['GET'], scheme: 'http' | 'https' = 'http'): NormalizedEgress {
  return { host, port, scheme, methods: [...methods].sort() };
}

export interface SecretsEnv {
  dir: string;
  dbPath: string;
  store: Store;
  secrets: SecretStore;
  redactor: Redactor;
}

/** A real store and secret store in a fresh test home (key file created there). */
export function openSecrets(t: Test): SecretsEnv {
  const dir = t.testdir();
  const dbPath = join(dir, 'tyrum.db');
  const store = openStore(dbPath);
  t.teardown(() => store.close());
  const secrets = new SecretStore(store, loadSecretKey(dir, {}));
  return { dir, dbPath, store, secrets, redactor: Redactor.fromSecrets(secrets) };
}

export interface Harness {
  egress: EgressHandler;
  records: EgressRecord[];
  /** Hosts passed to the resolver, in order. */
  resolved: string[];
  call(url: string, init?: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array | null; maxResponseBytes?: number; signal?: AbortSignal }): ReturnType<EgressHandler>;
}

/**
 * An egress handler for plugin `plugin` with `rights`; `dns` maps host names to the addresses
 * the injected resolver returns (unknown names fail like NXDOMAIN).
 */
export function harness(env: SecretsEnv, rights: EgressRights | null, dns: Record<string, string[]> = {}, extra: Partial<EgressOptions> = {}): Harness {
  const records: EgressRecord[] = [];
  const resolved: string[] = [];
  const egress = createEgressHandler({
    rightsFor: (key) => (key === 'plugin' ? rights : null),
    secrets: env.secrets,
    redactor: env.redactor,
    resolve: async (host) => {
      resolved.push(host);
      const a = dns[host];
      if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return a;
    },
    onEgress: (r) => records.push(r),
    ...extra,
  });
  return {
    egress,
    records,
    resolved,
    call: (url, init = {}) => {
      const body = init.body === undefined || init.body === null ? null : typeof init.body === 'string' ? new TextEncoder().encode(init.body) : init.body;
      const req: EgressRequest = {
        pluginKey: 'plugin',
        url,
        method: init.method ?? 'GET',
        headers: init.headers ?? {},
        body,
        maxResponseBytes: init.maxResponseBytes ?? 1024 * 1024,
        signal: init.signal ?? new AbortController().signal,
      };
      return egress(req);
    },
  };
}

export const decode = (b: Uint8Array | undefined): string => new TextDecoder().decode(b ?? new Uint8Array(0));

/** The error a promise rejects with (fails the test if it resolves). */
export async function rejection(t: Test, p: Promise<unknown>): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string; details?: Record<string, unknown> };
  }
  t.fail('expected a rejection');
  return new Error('resolved') as Error & { code?: string };
}
