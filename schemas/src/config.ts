/** The gateway configuration file, `<home>/config.json`. Every key is optional. */
import { Type } from '@sinclair/typebox';
import { Strict } from './common.js';

const Int = (min: number, max: number, description: string) => Type.Optional(Type.Integer({ minimum: min, maximum: max, description }));

export const LimitsConfig = Strict({
  max_frame_bytes: Int(1024, 64 * 1024 * 1024, 'Largest WebSocket frame accepted; bigger closes with 1009. Default 1048576.'),
  max_queued_bytes: Int(64 * 1024, 1024 * 1024 * 1024, 'Unsent bytes queued to one socket before it is closed as a slow consumer (1013). Default 4194304.'),
  handshake_timeout_ms: Int(100, 120_000, 'Time to finish connect.init + connect.proof; else close 4002. Default 10000.'),
  heartbeat_interval_ms: Int(100, 600_000, 'WebSocket ping interval; a peer that misses a pong is dropped. Default 30000.'),
  max_json_depth: Int(2, 1024, 'Deepest nesting accepted in a frame. Default 64.'),
  max_json_nodes: Int(16, 10_000_000, 'Most JSON values accepted in one frame. Default 100000.'),
  max_inflight_requests: Int(1, 10_000, 'Requests one token may have outstanding, all its WebSocket connections and /mcp request items (of a batch too) together; more get rate_limited. Default 64.'),
  max_connections: Int(1, 1_000_000, 'Open WebSocket connections across the gateway; more get HTTP 503. Default 10000.'),
  max_pending_upgrades: Int(1, 100_000, 'Upgrades being authenticated at once; more get HTTP 503 (bounds token-hashing work an unauthenticated flood can cause). Default 128.'),
  http_headers_timeout_ms: Int(100, 120_000, 'Time a client has to send request headers (slow-header defence). Default 10000.'),
  http_request_timeout_ms: Int(100, 600_000, 'Time for a whole HTTP request. Default 30000.'),
  http_keep_alive_timeout_ms: Int(100, 600_000, 'Idle keep-alive time. Default 5000.'),
  http_body_limit_bytes: Int(1024, 64 * 1024 * 1024, 'Largest HTTP request body. Default 1048576.'),
  auth_failure_audit_per_minute: Int(1, 100_000, 'Audit entries per minute for failed authentication from one address; the rest are counted. Default 30.'),
  audit_checkpoint_interval_ms: Int(10, 3_600_000, 'The signed audit checkpoint is written at most this long after an entry is committed (and at shutdown); entries newer than the last checkpoint can be cut off the log undetected until it is written. Default 1000.'),
  audit_checkpoint_entries: Int(1, 1_000_000, 'The signed audit checkpoint is written as soon as this many entries are committed without one. Default 1000.'),
  sandbox_idle_ms: Int(10, 86_400_000, 'A plugin sandbox without calls for this long is evicted; the next call starts it again. Default 600000.'),
  max_live_sandboxes: Int(1, 10_000, 'Most plugin sandboxes live at once; starting one more evicts the least recently used one without a call in flight. Default 256.'),
  max_pending_messages: Int(1, 10_000, 'User messages a conversation may hold waiting for a turn (a turn takes every waiting message); more are refused with TYRUM_ERR_CONVERSATION_QUEUE_FULL. Default 20.'),
  max_artifact_bytes: Int(1, 4 * 1024 * 1024 * 1024, 'Largest artifact (evidence blob) stored; a bigger one is refused with TYRUM_ERR_ARTIFACT_TOO_LARGE and nothing is stored. Default 67108864 (64 MiB).'),
  max_artifacts_total_bytes: Int(1, Number.MAX_SAFE_INTEGER, 'Total size of all stored artifacts; a put that would pass it is refused with TYRUM_ERR_ARTIFACT_QUOTA. Default 10737418240 (10 GiB).'),
  max_concurrent_turns: Int(1, 10_000, 'Agent turns worked on at once across conversations (a turn waiting for a model or an approval counts); more wait. Default 16.'),
});

/** Days to keep something: an integer of days, or null for "keep forever". */
const Days = (description: string) => Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 36_500 }), Type.Null()], { description }));

export const RetentionConfig = Strict(
  {
    runs_days: Days(
      'Runs that ended (succeeded, failed, cancelled) longer ago than this are removed with their steps, attempts and approvals, and schedule fire records older than this go too; a run something still waits on (a live agent turn, a pending approval) stays. null: keep forever. Default 30.',
    ),
    events_days: Days('Outbox events (the catch-up log clients resume from) older than this are removed, oldest first; the newest event always stays. Must not exceed runs_days. null: keep forever. Default 7.'),
    artifacts_days: Days('Artifacts (evidence blobs) older than this are removed by the artifacts target, once it is registered. null: keep forever. Default 30.'),
    conversations_days: Days('Conversations without activity for longer than this are removed with their messages, turns and deliveries (not while a turn or delivery is live). They are user data: null (the default) keeps them forever.'),
    sweep_interval_ms: Type.Optional(
      Type.Union([Type.Integer({ minimum: 60_000, maximum: 7 * 86_400_000 }), Type.Null()], {
        description: 'How often the running gateway sweeps (the first sweep runs one interval after start). null: never on its own; `tyrum gc` still sweeps. Default 3600000 (1 h).',
      }),
    ),
    batch_size: Int(1, 100_000, 'Rows (runs, events, fire records, conversations) a sweep examines per transaction; a removed run takes its steps, attempts and approvals with it. The sweeper yields to the event loop between transactions. Default 500.'),
  },
  { description: 'What is removed when, by the sweeper and `tyrum gc` (docs/retention.md). The audit log is never removed: archive it with `tyrum audit archive`.' },
);

export const TelemetryConfig = Strict(
  {
    otlp_endpoint: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 2048,
        pattern: '^https?://[^\\s]+$',
        description: 'Where OpenTelemetry traces are sent (OTLP over HTTP, JSON), e.g. http://127.0.0.1:4318/v1/traces. Unset (the default): tracing is off and no OpenTelemetry code is loaded.',
      }),
    ),
    service_name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'The service.name resource attribute of every span. Default "tyrum-gateway".' })),
    sample_ratio: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Fraction of new traces recorded (a call whose incoming traceparent is sampled follows its parent). Default 1.' })),
  },
  { description: 'Traces (docs/observability.md). Metrics at GET /metrics need no configuration.' },
);

export const StoreConfig = Strict(
  {
    kind: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')], {
      description: 'Where the state lives: "sqlite" (the default: <home>/tyrum.db) or "postgres" (a PostgreSQL 13+ database with synchronous_commit on; README "PostgreSQL").',
    }),
    url: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 2048,
        description: 'postgres: the connection URL (postgres://user:password@host:port/database). It may hold a password: prefer url_env. Never logged or echoed in errors.',
      }),
    ),
    url_env: Type.Optional(
      Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 128, description: 'postgres: the environment variable that holds the connection URL (instead of url).' }),
    ),
    pool: Type.Optional(
      Strict(
        {
          statement_timeout_ms: Int(100, 600_000, 'Longest a statement may wait for its answer before it fails with TYRUM_ERR_STORE_UNAVAILABLE. Default 30000.'),
          connect_timeout_ms: Int(100, 120_000, 'Longest connecting may take. Default 10000.'),
        },
        { description: 'postgres: connection settings. The store holds two connections (the writer of the group commit and a reader of committed rows).' },
      ),
    ),
  },
  { description: 'The state store (docs/dev/postgres-port.md). Default {"kind": "sqlite"}.' },
);

export const GatewayConfig = Strict({
  host: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'Bind address. Default 127.0.0.1.' })),
  port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'Listen port; 0 picks a free one. Default 8788.' })),
  allowed_origins: Type.Optional(Type.Array(Type.String({ pattern: '^https?://[^/]+$' }), { maxItems: 64, description: 'Origins allowed to open browser WebSockets. Default: the gateway\'s own.' })),
  trusted_proxies: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 64, description: 'Peer addresses whose X-Forwarded-For is believed. Default none.' })),
  tls: Type.Optional(Strict({ cert_file: Type.String({ minLength: 1 }), key_file: Type.String({ minLength: 1 }) })),
  limits: Type.Optional(LimitsConfig),
  retention: Type.Optional(RetentionConfig),
  telemetry: Type.Optional(TelemetryConfig),
  store: Type.Optional(StoreConfig),
  trusted_publishers: Type.Optional(
    Type.Array(
      Strict({
        name: Type.String({ minLength: 1, maxLength: 100, description: "The publisher's name, exactly as plugin manifests write `publisher`." }),
        public_key: Type.String({
          pattern: '^[A-Za-z0-9_-]{40,200}$',
          description: 'The Ed25519 public key (SPKI DER, base64url) that `tyrum plugin keygen` printed.',
        }),
      }),
      {
        maxItems: 64,
        description:
          'When set (non-empty), plugins install only from archives signed (`tyrum plugin sign`, ARCHIVE.sig beside it) with the key of the publisher their manifest names. Default: unsigned plugins install; a present but invalid signature is refused either way.',
      },
    ),
  ),
});
