/**
 * The edge: the only module that imports fastify and ws.
 *
 * Authentication happens at the HTTP upgrade, before any WebSocket exists (PROTOCOL.md
 * "Transport"): the `tyrum-v1` subprotocol must be offered (else 400), a browser `Origin` must be
 * allowed (else 403), and a live token must come in `Authorization: Bearer` or as the offered
 * subprotocol `tyrum-auth.<base64url(token)>` (else 401). Only then is the socket upgraded and
 * handed to a protocol `Session`.
 */
import { readFileSync } from 'node:fs';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { CONTRACTS, contractDocument, DEFAULT_TENANT, EVENTS, type EventType, type OperationType } from '../../schemas/index.js';
import type { Config } from '../config/index.js';
import { isLoopback } from '../config/index.js';
import type { TokenService, AuthenticatedToken } from '../auth/tokens.js';
import type { AuditLog, AuditActor } from '../audit/index.js';
import type { Store } from '../store/index.js';
import { Session, CLOSE, encodeEvent, type Peer, type Transport } from '../protocol/session.js';
import type { InflightLimiter } from '../protocol/inflight.js';
import type { McpBodyProblem } from '../mcp/endpoint.js';
import { clientAddress } from './address.js';
import { Presence, PRESENCE_FLUSH_MS } from './presence.js';
import { fromB64url } from '../util/encoding.js';
import { authorize } from '../auth/authorize.js';
import { TyrumError } from '../errors/index.js';
import { UI_HEADERS, uiContentSecurityPolicy, type UiAssets } from './ui.js';
import { logFields, withIncomingTrace } from '../telemetry/context.js';

export { UiAssets } from './ui.js';

export interface GatewayDeps {
  config: Config;
  store: Store;
  tokens: TokenService;
  audit: AuditLog;
  handle(type: OperationType, payload: Record<string, unknown>, peer: Peer): Promise<Record<string, unknown>>;
  /**
   * The per-token in-flight budget (`limits.max_inflight_requests`) every WebSocket session
   * shares with the MCP endpoint (the same limiter must be given to both).
   */
  inflight: InflightLimiter;
  /** Pino log level, or false for no logging. */
  logLevel?: string | false;
  /** Where log lines (JSON, one per line) go; default stdout. */
  logStream?: { write(line: string): void };
  /**
   * Called when another process committed to the database (CLI changes to plugins, grants,
   * secrets); resolves once those changes are picked up (requests wait for it: see syncExternal).
   */
  onExternalChange?: () => Promise<unknown> | void;
  /** A connection finished its handshake (nodes go to the node registry). */
  onPeerReady?: (session: Session) => void;
  /** A handshaken connection closed. */
  onPeerClosed?: (session: Session, peer: Peer) => void;
  /** A handshaken connection answered a heartbeat. */
  onPeerSeen?: (peer: Peer) => void;
  /** Applied to every event payload before it is pushed (secret values never leave in events). */
  redact?: (value: unknown) => unknown;
  /**
   * The tenant a live (not outbox) event belongs to, from the object its payload names (a
   * conversation's message.delta); absent or unnamed: the default tenant.
   */
  tenantOf?: (payload: Record<string, unknown>) => string;
  version: string;
  /**
   * The gateway key's id (a fingerprint of its public key), shown on /healthz so `tyrum doctor`
   * can tell this home's gateway from another one answering on the same port.
   */
  keyId: string;
  now?: () => number;
  /**
   * The MCP endpoint (core/mcp/endpoint.ts) behind `POST /mcp`. The edge checks the Origin and the
   * bearer token exactly as for the WebSocket upgrade and hands over the raw request, its parsed
   * JSON body and the authenticated caller; without it /mcp answers 404.
   */
  mcp?: {
    handle(req: IncomingMessage, res: ServerResponse, body: unknown, caller: { token: AuthenticatedToken; remoteAddress: string }): Promise<void>;
    /** Answers a request whose body the edge could not parse (in the endpoint's own error format). */
    badBody(res: ServerResponse, problem: McpBodyProblem, detail: string): void;
    /** Ends requests in flight (called before the HTTP server closes, which waits for them). */
    close(): Promise<void>;
  };
  /**
   * `POST /channels/<plugin>/<instance>/webhook`: a chat platform's webhook. No bearer token (the
   * platform cannot send one): the channel service verifies the platform's signature or secret
   * token over the raw body before anything else. Without it the route answers 404.
   */
  /**
   * The operator web UI (core/gateway/ui.ts), served at `/` with a strict CSP; without it `/`
   * answers 404 saying how to build it.
   */
  ui?: UiAssets | null;
  channelWebhook?(plugin: string, instance: string, headers: IncomingMessage['headers'], body: Buffer): Promise<{ status: number; body: unknown }>;
  /**
   * `GET /artifacts/<id>`: evidence blobs (core/artifacts). The edge authenticates the bearer token
   * as for /mcp, requires `operator.read` (or `operator.admin`), asks `readableBy`, and streams
   * the bytes. Without it the route answers 404.
   */
  artifacts?: {
    readableBy(artifactId: string, scopes: readonly string[]): boolean;
    open(artifactId: string): Promise<{ info: { artifact_id: string; media_type: string; name: string | null }; stream: Readable; size: number }>;
    contentDisposition(name: string | null, fallback: string): string;
  };
  /**
   * `GET /metrics` (core/telemetry): Prometheus text for a bearer token with `operator.metrics`,
   * `operator.read` or `operator.admin`; frames in and out are counted here. Without it the route answers 404.
   */
  metrics?: {
    readonly contentType: string;
    scrape(): Promise<string>;
    frameIn(): void;
    frameOut(): void;
  };
}

/** Who may download artifacts: the scope run.get needs (or admin), clients only. */
const ARTIFACT_READ = { scopes: ['operator.read', 'operator.admin'], roles: ['client'] } as const;
/** Who may scrape metrics: the metrics-only scope (a scraper's token), or the read-only operator scope, or admin; clients only. */
const METRICS_READ = { scopes: ['operator.metrics', 'operator.read', 'operator.admin'], roles: ['client'] } as const;
const METRICS_ONLY = 'this token has only operator.metrics: it reads GET /metrics and nothing else';

const INVALID_TOKEN = 'invalid, expired or revoked token';

/** Time after a close frame before the socket is destroyed regardless. */
const CLOSE_GRACE_MS = 2000;
/** How often live sockets are re-checked against the token table (revocations by other processes). */
const REVOCATION_POLL_MS = 250;

interface Live {
  ws: WebSocket;
  session: Session;
  alive: boolean;
}

export class GatewayServer {
  readonly app: FastifyInstance;
  private readonly wss: WebSocketServer;
  private readonly live = new Set<Live>();
  private pendingUpgrades = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private revocationPoll: NodeJS.Timeout | null = null;
  private presenceFlush: NodeJS.Timeout | null = null;
  /** Devices and token uses seen at handshakes, written every PRESENCE_FLUSH_MS rather than on the handshake path. */
  private readonly presence: Presence;
  private lastDataVersion = -1;
  /** Picking up another process's changes, when that is in progress. */
  private externalSync: Promise<void> | null = null;
  private lastFullCheck = 0;
  private readonly authFailures = new Map<string, { windowStart: number; count: number; suppressed: number }>();
  private boundPort = 0;
  private readonly now: () => number;

  constructor(private readonly deps: GatewayDeps) {
    const { limits } = deps.config;
    this.now = deps.now ?? Date.now;
    this.presence = new Presence(deps.store, deps.tokens, this.now);
    const tls = deps.config.tls;
    // Node enforces headersTimeout/requestTimeout only when it sweeps connections, every 30 s by
    // default; sweep at half the shorter timeout (bounded to 50 ms-1 s) so the limits hold.
    const checkEvery = Math.max(50, Math.min(1000, Math.floor(Math.min(limits.httpHeadersTimeoutMs, limits.httpRequestTimeoutMs) / 2)));
    this.app = Fastify({
      // Lines written while a call is handled carry its run, step, attempt and trace ids (core/telemetry/context.ts).
      logger: deps.logLevel === false ? false : { level: deps.logLevel ?? 'info', mixin: logFields, ...(deps.logStream ? { stream: deps.logStream } : {}) },
      bodyLimit: limits.httpBodyLimitBytes,
      connectionTimeout: limits.httpRequestTimeoutMs,
      requestTimeout: limits.httpRequestTimeoutMs,
      keepAliveTimeout: limits.httpKeepAliveTimeoutMs,
      // fastify's own trustProxy is given the same list, so request.ip agrees with clientAddress().
      trustProxy: deps.config.trustedProxies.length > 0 ? [...deps.config.trustedProxies] : false,
      ...(tls
        ? { https: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), connectionsCheckingInterval: checkEvery } }
        : { http: { connectionsCheckingInterval: checkEvery } }),
    });
    this.app.server.headersTimeout = limits.httpHeadersTimeoutMs;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: limits.maxFrameBytes,
      perMessageDeflate: false,
      // We validate UTF-8 ourselves so invalid text is a 4003 protocol violation, per PROTOCOL.md.
      skipUTF8Validation: true,
      // Select exactly tyrum-v1; never echo the tyrum-auth.* entry.
      handleProtocols: (protocols) => (protocols.has('tyrum-v1') ? 'tyrum-v1' : false),
    });
    // Changes committed before now were read when the home was opened.
    this.lastDataVersion = deps.store.dataVersion();
    this.routes();
    this.app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.onUpgrade(req, socket, head);
    });
  }

  /** Start listening; resolves with the bound port. */
  async listen(): Promise<number> {
    await this.app.listen({ host: this.deps.config.host, port: this.deps.config.port });
    const addr = this.app.server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : this.deps.config.port;
    this.heartbeat = setInterval(() => this.beat(), this.deps.config.limits.heartbeatIntervalMs);
    this.heartbeat.unref();
    this.revocationPoll = setInterval(() => {
      try {
        this.checkRevocations();
      } catch (e) {
        // The store is unreachable (TYRUM_ERR_STORE_UNAVAILABLE on PostgreSQL): a timer must not
        // throw (it would end the process); the next poll looks again.
        this.app.log.error({ err: e }, 'checking for revoked tokens and external changes failed');
      }
    }, REVOCATION_POLL_MS);
    this.revocationPoll.unref();
    this.presenceFlush = setInterval(() => this.flushPresence(), PRESENCE_FLUSH_MS);
    this.presenceFlush.unref();
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Number of open WebSocket connections. */
  get connections(): number {
    return this.live.size;
  }

  /** Handshaken connections by role (the metrics' connections gauge; read per scrape). */
  connectionsByRole(): { client: number; node: number } {
    const out = { client: 0, node: 0 };
    for (const l of this.live) {
      const peer = l.session.peer;
      if (peer) out[peer.role] += 1;
    }
    return out;
  }

  /** Push a live (non-durable) event to every handshaken connection in its audience. */
  publish(type: EventType, payload: Record<string, unknown>, tenant?: string): void {
    this.pushEvent(randomUUID(), type, new Date(this.now()).toISOString(), payload, tenant ?? this.deps.tenantOf?.(payload) ?? DEFAULT_TENANT);
  }

  /**
   * Push an event under a given id (durable events keep their outbox id, so a client that also
   * reads them with event.list can dedupe) to every handshaken connection whose token holds one
   * of the event's audience scopes and belongs to the event's tenant (docs/tenancy.md). Payloads are
   * redacted first.
   */
  pushEvent(eventId: string, type: EventType, at: string, payload: Record<string, unknown>, tenant: string = DEFAULT_TENANT): void {
    const audience = EVENTS[type].audience as readonly string[];
    if (this.deps.redact) payload = this.deps.redact(payload) as Record<string, unknown>;
    // Encoded once, lazily: the same text goes to every connection in the audience.
    let frame: string | null = null;
    for (const l of this.live) {
      const peer = l.session.peer;
      if (peer && (peer.token.tenant_id ?? DEFAULT_TENANT) === tenant && peer.token.scopes.some((s) => audience.includes(s))) l.session.sendEncoded((frame ??= encodeEvent(eventId, type, at, payload)));
    }
  }

  /** Close every connection authenticated by `tokenId` with 4001. */
  closeToken(tokenId: string, reason = 'token revoked'): void {
    for (const l of this.live) if (l.session.token.id === tokenId) l.session.close(CLOSE.UNAUTHORIZED, reason);
  }

  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.revocationPoll) clearInterval(this.revocationPoll);
    if (this.presenceFlush) clearInterval(this.presenceFlush);
    for (const l of this.live) l.session.close(CLOSE.GOING_AWAY, 'gateway shutting down');
    await this.deps.mcp?.close();
    await this.app.close();
    for (const l of this.live) l.ws.terminate();
    this.wss.close();
    this.flushPresence();
  }

  /** Writes the sightings noted since the last flush (one transaction); a failure is logged, never thrown. */
  private flushPresence(): void {
    try {
      this.presence.flush();
    } catch (e) {
      this.app.log.error({ err: e }, 'could not record devices and token uses');
    }
  }

  private routes(): void {
    // Channel webhooks get the raw bytes (signatures are over them), in their own scope so the
    // JSON parsing of /mcp is untouched.
    void this.app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: this.deps.config.limits.httpBodyLimitBytes }, (_req, body, done) => done(null, body));
      scope.post<{ Params: { plugin: string; instance: string } }>('/channels/:plugin/:instance/webhook', async (req, reply) => {
        if (!this.deps.channelWebhook) return reply.code(404).send({ error: { code: 'not_found', message: 'channels are not enabled' } });
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        try {
          const r = await this.deps.channelWebhook(req.params.plugin, req.params.instance, req.headers, body);
          return reply.code(r.status).header('content-type', 'application/json').send(JSON.stringify(r.body));
        } catch (e) {
          this.app.log.error({ err: e }, 'channel webhook failed');
          return reply.code(500).send({ error: { code: 'internal', message: 'internal error' } });
        }
      });
    });
    this.app.get('/healthz', async () => ({ status: 'ok', version: this.deps.version, key_id: this.deps.keyId }));
    this.app.get('/contracts', async () => ({ contracts: Object.keys(CONTRACTS).map((n) => `/contracts/${n}.json`) }));
    this.app.get<{ Params: { file: string } }>('/contracts/:file', async (req, reply) => {
      const m = /^(.+)\.json$/.exec(req.params.file);
      const doc = m ? contractDocument(m[1]!) : undefined;
      if (!doc) return reply.code(404).send({ error: { code: 'not_found', message: `no contract ${req.params.file}` } });
      return reply.header('content-type', 'application/schema+json; charset=utf-8').send(doc);
    });
    this.mcpRoutes();
    this.artifactRoutes();
    this.metricsRoute();
    this.uiRoutes();
  }

  /**
   * The bearer check of the plain HTTP routes (`/metrics`, `/artifacts`): the Origin, then a live
   * token in `Authorization: Bearer` (401, never a token in the URL), then the scope (403, audited
   * as authz.denied). Returns the token and the caller's address, or null once the refusal is sent.
   */
  private async bearer(req: FastifyRequest, reply: FastifyReply, spec: Parameters<typeof authorize>[0] & { scopes: readonly string[] }, requestType: string, what: string): Promise<{ token: AuthenticatedToken; remote: string } | null> {
    const remote = clientAddress(req.raw.socket.remoteAddress, req.headers['x-forwarded-for'], this.deps.config.trustedProxies);
    if (!this.originAllowed(req.headers.origin, remote)) {
      await reply.code(403).send({ error: { code: 'forbidden', message: 'origin not allowed' } });
      return null;
    }
    const token = await this.checkToken(presentedToken(req.headers.authorization, []), remote);
    if (typeof token === 'string') {
      await reply.code(401).header('www-authenticate', 'Bearer realm="tyrum"').send({ error: { code: 'unauthorized', message: token === 'missing' ? 'a token is required in Authorization: Bearer (tokens in the URL are refused)' : INVALID_TOKEN } });
      return null;
    }
    // Artifacts and metrics are host resources: a token of another tenant is refused (docs/tenancy.md).
    const decision: ReturnType<typeof authorize> =
      (token.tenant_id ?? DEFAULT_TENANT) !== DEFAULT_TENANT ? { allowed: false, reason: 'tenant', required: [] } : authorize(spec, { scopes: token.scopes, role: token.roles.includes('client') ? 'client' : 'node' });
    if (!decision.allowed) {
      this.audit('authz.denied', { kind: 'token', id: token.id }, { request_type: requestType, reason: decision.reason, required_scopes: decision.required, remote_address: remote });
      await reply.code(403).send({ error: { code: 'forbidden', message: `${what} requires one of: ${spec.scopes.join(', ')}` } });
      return null;
    }
    return { token, remote };
  }

  /**
   * `GET /metrics`: Prometheus text. 401 without a live bearer token, 403 without `operator.metrics`,
   * `operator.read` or `operator.admin` (audited as authz.denied), else this gateway's registry.
   */
  private metricsRoute(): void {
    this.app.get('/metrics', async (req, reply) => {
      const metrics = this.deps.metrics;
      if (!metrics) return reply.code(404).send({ error: { code: 'not_found', message: 'metrics are not enabled' } });
      if ((await this.bearer(req, reply, METRICS_READ, 'GET /metrics', 'reading metrics')) === null) return reply;
      let text: string;
      try {
        text = await metrics.scrape();
      } catch (e) {
        // A collector that throws: the scraper learns the scrape failed, never why (the log does).
        this.app.log.error({ err: e }, 'metrics scrape failed');
        return reply.code(500).send({ error: { code: 'internal', message: 'the metrics could not be collected; see the gateway log' } });
      }
      return reply.code(200).headers({ 'content-type': metrics.contentType, 'cache-control': 'no-store' }).send(text);
    });
  }

  /**
   * `GET /artifacts/<id>` (and HEAD): 401 without a live bearer token, 403 without the scope (audited
   * as authz.denied), 404 for an unknown id and for one this token may not read (the same answer,
   * so existence does not leak), else the bytes, streamed, with their media type, `nosniff`, a
   * download disposition, a sandboxing CSP and the digest as ETag (`If-None-Match` gets 304).
   */
  private artifactRoutes(): void {
    const notFound = (reply: FastifyReply, id: string) => reply.code(404).header('content-type', 'application/json').send({ error: { code: 'not_found', message: `no artifact ${id.slice(0, 80)}` } });
    this.app.get<{ Params: { id: string } }>('/artifacts/:id', async (req, reply) => {
      const artifacts = this.deps.artifacts;
      if (!artifacts) return reply.code(404).send({ error: { code: 'not_found', message: 'artifacts are not enabled' } });
      const caller = await this.bearer(req, reply, ARTIFACT_READ, 'GET /artifacts', 'downloading artifacts');
      if (caller === null) return reply;
      const { token, remote } = caller;
      const id = req.params.id;
      await this.syncExternal();
      if (!artifacts.readableBy(id, token.scopes)) return notFound(reply, id);
      const etag = `"${id}"`;
      const common = {
        etag,
        'cache-control': 'private, no-cache',
        'x-content-type-options': 'nosniff',
        'content-security-policy': "sandbox; default-src 'none'",
        'cross-origin-resource-policy': 'same-origin',
      };
      if (req.headers['if-none-match'] === etag) return reply.code(304).headers(common).send();
      let opened;
      try {
        opened = await artifacts.open(id);
      } catch (e) {
        if (e instanceof TyrumError && e.code === 'TYRUM_ERR_NOT_FOUND') return notFound(reply, id);
        this.app.log.error({ err: e, artifact_id: id }, 'artifact could not be read');
        return reply.code(500).send({ error: { code: 'internal', message: 'the artifact could not be read' } });
      }
      this.audit('artifact.downloaded', { kind: 'token', id: token.id }, { artifact_id: id, digest: id.slice(7), size: opened.size, remote_address: remote });
      return reply
        .code(200)
        .headers({
          ...common,
          'content-type': opened.info.media_type,
          'content-length': String(opened.size),
          'content-disposition': artifacts.contentDisposition(opened.info.name, id.slice(7, 23)),
        })
        .send(opened.stream);
    });
  }

  /**
   * `GET /` and the UI's files: static, from memory, with the CSP and hardening headers on every
   * answer (the 404s too). The UI reads the token from the URL fragment, which browsers never
   * send, so no token reaches this route or its logs.
   */
  private uiRoutes(): void {
    const tls = this.deps.config.tls !== null;
    const serve = async (req: { url: string; headers: IncomingMessage['headers'] }, reply: FastifyReply) => {
      reply.header('content-security-policy', uiContentSecurityPolicy(req.headers.host, tls));
      for (const [k, v] of Object.entries(UI_HEADERS)) reply.header(k, v);
      const path = req.url.split('?')[0] ?? '/';
      const ui = this.deps.ui;
      if (!ui) {
        return reply.code(404).header('content-type', 'text/plain; charset=utf-8').send('The operator UI is not built: run `npm run build` (it writes dist/ui), then restart the gateway.\n');
      }
      const file = ui.get(path);
      if (!file) return reply.code(404).send({ error: { code: 'not_found', message: 'no such file' } });
      // index.html is revalidated every time (it names the current bundle); bundles are hashed by etag.
      reply.header('cache-control', 'no-cache').header('etag', file.etag);
      if (req.headers['if-none-match'] === file.etag) return reply.code(304).send();
      return reply.header('content-type', file.type).send(file.body);
    };
    this.app.get('/', serve);
    this.app.get('/ui/*', serve);
  }

  /**
   * `POST /mcp`: the MCP Streamable HTTP endpoint, stateless (no session, so GET and DELETE are
   * 405). Origin and token are checked in onRequest, before the body is read: a browser page of
   * another origin gets 403 (DNS rebinding), anything without a live `Authorization: Bearer`
   * token gets 401 with `WWW-Authenticate: Bearer`. A token in the query string is never read.
   */
  private mcpRoutes(): void {
    const callers = new WeakMap<IncomingMessage, { token: AuthenticatedToken; remoteAddress: string }>();
    const notAllowed = JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed: this MCP endpoint is stateless; use POST' }, id: null });
    for (const method of ['GET', 'DELETE'] as const) {
      this.app.route({ method, url: '/mcp', handler: async (_req, reply) => reply.code(405).header('allow', 'POST').header('content-type', 'application/json').send(notAllowed) });
    }
    this.app.post('/mcp', {
      bodyLimit: this.deps.config.limits.httpBodyLimitBytes,
      onRequest: async (req, reply) => {
        // A refusal here comes before the body is read: it closes the connection, so a large
        // declared body is never drained for a caller that was not let in.
        const refuse = (status: number, code: string, message: string) => {
          reply.raw.once('finish', () => req.raw.socket.destroySoon());
          return reply.code(status).header('connection', 'close').send({ error: { code, message } });
        };
        if (!this.deps.mcp) return refuse(404, 'not_found', 'the MCP endpoint is not enabled');
        const remote = clientAddress(req.raw.socket.remoteAddress, req.headers['x-forwarded-for'], this.deps.config.trustedProxies);
        if (!this.originAllowed(req.headers.origin, remote)) return refuse(403, 'forbidden', 'origin not allowed');
        const token = await this.checkToken(presentedToken(req.headers.authorization, []), remote);
        if (typeof token === 'string') {
          reply.header('www-authenticate', 'Bearer realm="tyrum"');
          return refuse(401, 'unauthorized', token === 'missing' ? 'a token is required in Authorization: Bearer (tokens in the URL are refused)' : INVALID_TOKEN);
        }
        if (this.metricsOnly(token, 'POST /mcp', remote)) return refuse(403, 'forbidden', METRICS_ONLY);
        callers.set(req.raw, { token, remoteAddress: remote });
      },
      // The body parser runs after onRequest (only an authenticated caller gets this far): a body
      // it refuses is answered by the endpoint, as JSON-RPC, never with fastify's own error body.
      errorHandler: async (err: { name: string; code?: string; statusCode?: number; message: string }, req, reply) => {
        if (!this.deps.mcp || reply.sent) throw err;
        const bad = bodyProblem(err, this.deps.config.limits.httpBodyLimitBytes, req.headers['content-type']);
        if (bad === null) throw err;
        reply.hijack();
        this.deps.mcp.badBody(reply.raw, bad.problem, bad.detail);
      },
      handler: async (req, reply) => {
        const caller = callers.get(req.raw);
        if (!this.deps.mcp || !caller) return reply.code(401).header('www-authenticate', 'Bearer realm="tyrum"').send({ error: { code: 'unauthorized', message: 'not authenticated' } });
        // From here the MCP transport owns the response (it may stream server-sent events).
        reply.hijack();
        try {
          // An incoming W3C traceparent becomes the parent of the calls this request makes (core/telemetry).
          const traceparent = req.headers.traceparent;
          const mcp = this.deps.mcp;
          await withIncomingTrace(typeof traceparent === 'string' ? traceparent : undefined, () => mcp.handle(req.raw, reply.raw, req.body, caller));
        } catch (e) {
          this.app.log.error({ err: e }, 'mcp request failed');
          if (!reply.raw.headersSent) reply.raw.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'internal', message: 'internal error' } }));
          else reply.raw.destroy();
        }
      },
    });
  }

  private ownOrigins(): string[] {
    const scheme = this.deps.config.tls ? 'https' : 'http';
    const port = this.boundPort;
    const hosts = isLoopback(this.deps.config.host) ? ['127.0.0.1', 'localhost', '[::1]'] : [this.deps.config.host];
    return hosts.map((h) => `${scheme}://${h}:${port}`);
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const remote = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], this.deps.config.trustedProxies);
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/ws') return rejectUpgrade(socket, 404, 'not_found', 'WebSocket endpoint is /ws');

    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (!offered.includes('tyrum-v1')) return rejectUpgrade(socket, 400, 'invalid_request', 'the tyrum-v1 subprotocol is required');

    if (!this.originAllowed(req.headers.origin, remote)) return rejectUpgrade(socket, 403, 'forbidden', 'origin not allowed');

    const limits = this.deps.config.limits;
    if (this.live.size >= limits.maxConnections || this.pendingUpgrades >= limits.maxPendingUpgrades) {
      return rejectUpgrade(socket, 503, 'rate_limited', 'too many connections');
    }

    this.pendingUpgrades++;
    let token: AuthenticatedToken | 'missing' | 'invalid';
    try {
      token = await this.checkToken(presentedToken(req.headers.authorization, offered), remote);
    } finally {
      this.pendingUpgrades--;
    }
    if (token === 'missing') return rejectUpgrade(socket, 401, 'unauthorized', 'a token is required (Authorization: Bearer, or the tyrum-auth.<base64url> subprotocol)');
    if (token === 'invalid') return rejectUpgrade(socket, 401, 'unauthorized', INVALID_TOKEN);
    if (this.metricsOnly(token, 'WebSocket upgrade', remote)) return rejectUpgrade(socket, 403, 'forbidden', METRICS_ONLY);
    if (socket.destroyed) return;
    const authed = token;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.attach(ws, authed, remote));
  }

  /** A browser's Origin must be allowed (the upgrade and /mcp alike); a refusal is recorded. */
  private originAllowed(origin: string | undefined, remote: string): boolean {
    if (origin === undefined || (this.deps.config.allowedOrigins ?? this.ownOrigins()).includes(origin)) return true;
    this.authFailed(remote, 'origin not allowed', null, 403);
    return false;
  }

  /**
   * A token whose only scope is `operator.metrics` (a Prometheus scraper's) reads `GET /metrics`
   * and nothing else: no WebSocket session (not even ping or a presence entry under a label of its
   * choosing) and no MCP session. True, audited as authz.denied, when `token` is one.
   */
  private metricsOnly(token: AuthenticatedToken, requestType: string, remote: string): boolean {
    if (token.scopes.length === 0 || !token.scopes.every((s) => s === 'operator.metrics')) return false;
    this.audit('authz.denied', { kind: 'token', id: token.id }, { request_type: requestType, reason: 'scope', required_scopes: ['operator.read', 'operator.write', 'operator.approvals', 'operator.pairing', 'operator.admin'], remote_address: remote });
    return true;
  }

  /** The presented token, authenticated (the upgrade and /mcp alike); a failure is recorded. */
  private async checkToken(presented: string | null, remote: string): Promise<AuthenticatedToken | 'missing' | 'invalid'> {
    if (presented === null) {
      this.authFailed(remote, 'no token', null, 401);
      return 'missing';
    }
    const token = await this.deps.tokens.authenticate(presented);
    if (token !== null) return token;
    this.authFailed(remote, 'invalid token', /^tyrum_([0-9a-f]{16})_/.exec(presented)?.[1] ?? null, 401);
    return 'invalid';
  }

  private attach(ws: WebSocket, token: AuthenticatedToken, remote: string): void {
    const metrics = this.deps.metrics;
    const transport: Transport = {
      send: metrics
        ? (text) => {
            metrics.frameOut();
            ws.send(text);
          }
        : (text) => ws.send(text),
      close: (code, reason) => {
        // Defence in depth: ws throws on an invalid code or reason; never let that escape.
        try {
          ws.close(code, reason);
        } catch {
          ws.terminate();
          return;
        }
        setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
      },
      bufferedAmount: () => ws.bufferedAmount,
    };
    const log = this.app.log;
    const session = new Session(transport, token, remote, this.deps.config.limits, {
      handle: this.deps.handle,
      claimSingleUse: (tokenId, deviceId) => this.deps.store.tx(() => this.deps.store.tokens.claimSingleUse(tokenId, deviceId, this.now())),
      audit: (type, actor, data) => this.audit(type, actor as AuditActor, data),
      authFailed: (reason, closeCode) => this.authFailed(remote, reason, token.id, null, closeCode),
      emit: (type, payload) => this.publish(type, payload, token.tenant_id ?? DEFAULT_TENANT),
      onDeviceSeen: (d) => {
        // Noted, not written: no fsync on the handshake path (see core/gateway/presence.ts).
        try {
          this.presence.device(d);
        } catch (e) {
          log.error({ err: e }, 'could not record device');
        }
      },
      log: (level, msg, data) => log[level](data ?? {}, msg),
      onReady: (s) => this.deps.onPeerReady?.(s),
      onClosed: (s, peer) => this.deps.onPeerClosed?.(s, peer),
      strayResponse: (peer, requestId) => this.audit('node.stray_response', { kind: 'token', id: peer.token.id }, { connection_id: peer.connectionId, device_id: peer.deviceId, request_id: requestId }),
    }, this.deps.inflight);
    const entry: Live = { ws, session, alive: true };
    this.live.add(entry);
    ws.on('pong', () => {
      entry.alive = true;
      const peer = session.peer;
      if (peer) this.deps.onPeerSeen?.(peer);
    });
    ws.on('message', (data, isBinary) => {
      metrics?.frameIn();
      session.receive(toBytes(data), isBinary);
    });
    ws.on('error', (err) => log.warn({ err: err.message, connection_id: session.connectionId }, 'websocket error'));
    ws.on('close', (code) => {
      this.live.delete(entry);
      const wasReady = session.isReady;
      session.closedByTransport();
      if (wasReady) this.audit('connection.closed', { kind: 'token', id: token.id }, { connection_id: session.connectionId, code });
    });
  }

  /** Rate-limited audit of an authentication failure from one address (an unauthenticated flood must not grow the log without bound). */
  private authFailed(remote: string, reason: string, tokenId: string | null, httpStatus: number | null, closeCode: number | null = null): void {
    const now = this.now();
    let rec = this.authFailures.get(remote);
    if (!rec || now - rec.windowStart >= 60_000) {
      const suppressed = rec?.suppressed ?? 0;
      rec = { windowStart: now, count: 0, suppressed: 0 };
      this.authFailures.set(remote, rec);
      if (suppressed > 0) this.audit('auth.failed.suppressed', { kind: 'anonymous', ip: remote }, { count: suppressed });
      if (this.authFailures.size > 10_000) this.pruneAuthFailures(now);
    }
    if (++rec.count > this.deps.config.limits.authFailureAuditPerMinute) {
      rec.suppressed++;
      return;
    }
    // The actor is the address: a token id here is only what the peer presented or held.
    this.audit('auth.failed', { kind: 'anonymous', ip: remote }, { reason, token_id: tokenId, http_status: httpStatus, close_code: closeCode });
    // The host's, whoever's token was presented (a tenant's one included): failures at the edge are
    // the host operator's to watch, and a tenant is not told which addresses try its tokens.
    this.publish('auth.failed', { reason, remote_address: remote, token_id: tokenId, close_code: closeCode, http_status: httpStatus }, DEFAULT_TENANT);
  }

  private pruneAuthFailures(now: number): void {
    for (const [k, v] of this.authFailures) if (now - v.windowStart >= 60_000) this.authFailures.delete(k);
  }

  private audit(type: string, actor: AuditActor, data: Record<string, unknown>): void {
    this.deps.audit.append(type, actor, data).catch((e: unknown) => this.app.log.error({ err: e }, 'audit append failed'));
  }

  /**
   * Resolves once every change another process committed before this call is picked up (its
   * plugin enabled in the catalog, say). Every request waits for it before it is handled, so a
   * `tyrum plugin enable` followed at once by a call finds the tool, without waiting for the
   * next poll. One PRAGMA data_version when nothing changed.
   */
  syncExternal(): Promise<void> | null {
    this.noticeExternal();
    return this.externalSync;
  }

  /** True when another connection committed since the last look; starts picking it up. */
  private noticeExternal(): boolean {
    const dv = this.deps.store.dataVersion();
    if (dv === this.lastDataVersion) return false;
    this.lastDataVersion = dv;
    const run = Promise.resolve(this.deps.onExternalChange?.())
      .then(() => undefined)
      .catch((e: unknown) => this.app.log.error({ err: e }, 'picking up changes made by another process failed'));
    const sync = (this.externalSync ?? Promise.resolve()).then(() => run);
    this.externalSync = sync;
    void sync.then(() => {
      if (this.externalSync === sync) this.externalSync = null;
    });
    return true;
  }

  private beat(): void {
    for (const l of this.live) {
      if (!l.alive) {
        l.ws.terminate();
        continue;
      }
      l.alive = false;
      l.ws.ping();
    }
  }

  /**
   * Changes made by another process (the CLI writes the database directly: revocations, plugin
   * and grant changes, secrets) are noticed through SQLite's data_version, which changes only when
   * another connection commits; token expiry is checked once a second regardless.
   */
  private checkRevocations(): void {
    const now = this.now();
    const external = this.noticeExternal();
    if (!external && now - this.lastFullCheck < 1000) return;
    this.lastFullCheck = now;
    if (this.live.size === 0) return;
    const ids = [...new Set([...this.live].map((l) => l.session.token.id))];
    for (const id of this.deps.store.tokens.invalidAmong(ids, now)) this.closeToken(id, 'token revoked or expired');
  }
}

/**
 * A /mcp body fastify's parser refused, as the MCP endpoint answers it (what went wrong and what the
 * parser found); null for an error that is not about the body.
 */
function bodyProblem(err: { name: string; code?: string; statusCode?: number; message: string }, limitBytes: number, contentType: string | undefined): { problem: McpBodyProblem; detail: string } | null {
  switch (err.code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { problem: 'invalid_json', detail: 'the body is empty' };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { problem: 'invalid_json', detail: err.message };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { problem: 'unsupported_media_type', detail: `got ${JSON.stringify((contentType ?? 'none').slice(0, 100))}` };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { problem: 'too_large', detail: `the body is larger than http_body_limit_bytes (${limitBytes} bytes)` };
  }
  if (err.name === 'SyntaxError') return { problem: 'invalid_json', detail: err.message };
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return { problem: 'unreadable', detail: err.message };
  return null;
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

/**
 * The token from `Authorization: Bearer` or the `tyrum-auth.<b64url>` subprotocol. The scheme
 * name is case-insensitive (RFC 7235 section 2.1); the token itself is not.
 */
function presentedToken(authorization: string | undefined, offered: readonly string[]): string | null {
  if (authorization !== undefined) {
    const m = /^bearer +([!-~]+)$/i.exec(authorization);
    return m ? m[1]! : null;
  }
  const entry = offered.find((p) => p.startsWith('tyrum-auth.'));
  if (entry === undefined) return null;
  const raw = fromB64url(entry.slice('tyrum-auth.'.length));
  return raw === null ? null : raw.toString('utf8');
}

/** Answers an upgrade with a plain HTTP error; no WebSocket is ever opened. */
function rejectUpgrade(socket: Duplex, status: number, code: string, message: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
