/**
 * The operation and event catalog: for every request type, its payload and result schemas,
 * the scopes that may call it and the roles that may send it. This one table drives
 * authorization in the gateway, the emitted JSON Schemas and docs/protocol-operations.md
 * (generated, and checked by `npm test`). An operation is listed here only once it works.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { Strict, Scope, Role, type Scope as ScopeT, type Role as RoleT, IsoTime, TokenId, JsonObject } from './common.js';
import { ConnectInitPayload, ConnectInitResult, ConnectProofPayload, ConnectProofResult } from './handshake.js';

export interface OperationSpec {
  readonly description: string;
  /** Any one of these scopes allows the call; 'any' means every authenticated peer. */
  readonly scopes: readonly ScopeT[] | 'any';
  readonly roles: readonly RoleT[];
  readonly payload: TSchema;
  readonly result: TSchema;
  /** Handshake messages are handled by the connection state machine, not the op table. */
  readonly handshake?: true;
}

export const AuditEntry = Strict({
  seq: Type.Integer({ minimum: 1 }),
  ts: IsoTime,
  type: Type.String(),
  actor: JsonObject,
  data: JsonObject,
  prev_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});

export const TokenInfo = Strict({
  token_id: TokenId,
  label: Type.String(),
  scopes: Type.Array(Scope),
  roles: Type.Array(Role),
  created_at: IsoTime,
  expires_at: Type.Union([IsoTime, Type.Null()]),
  revoked_at: Type.Union([IsoTime, Type.Null()]),
  last_used_at: Type.Union([IsoTime, Type.Null()]),
});

const Empty = Strict({});

export const OPERATIONS = {
  'connect.init': {
    description: 'First frame of every connection: protocol revision, role, device identity, capabilities.',
    scopes: 'any',
    roles: ['client', 'node'],
    payload: ConnectInitPayload,
    result: ConnectInitResult,
    handshake: true,
  },
  'connect.proof': {
    description: 'Proves possession of the device key by signing the handshake transcript.',
    scopes: 'any',
    roles: ['client', 'node'],
    payload: ConnectProofPayload,
    result: ConnectProofResult,
    handshake: true,
  },
  ping: {
    description: 'Liveness check; answers with the server time.',
    scopes: 'any',
    roles: ['client', 'node'],
    payload: Empty,
    result: Strict({ pong: Type.Literal(true), server_time: IsoTime }),
  },
  'audit.list': {
    description: 'Pages through the hash-chained audit log in sequence order.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Strict({
      after_seq: Type.Optional(Type.Integer({ minimum: 0 })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
      type: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    }),
    result: Strict({ entries: Type.Array(AuditEntry), next_after_seq: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]) }),
  },
  'audit.verify': {
    description: 'Verifies the audit chain and its signed checkpoint; names the first bad entry.',
    scopes: ['operator.read'],
    roles: ['client'],
    payload: Empty,
    result: Strict({
      ok: Type.Boolean(),
      entries: Type.Integer({ minimum: 0 }),
      head_hash: Type.Union([Type.String(), Type.Null()]),
      checkpoint_seq: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
      first_bad_seq: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
      reason: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  'token.create': {
    description: 'Mints an access token; never with a scope the caller does not hold. The secret is returned once.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({
      scopes: Type.Array(Scope, { minItems: 1, maxItems: 5, uniqueItems: true }),
      roles: Type.Optional(Type.Array(Role, { minItems: 1, maxItems: 2, uniqueItems: true })),
      label: Type.Optional(Type.String({ maxLength: 128 })),
      ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 24 * 3600 })),
    }),
    result: Strict({ token: Type.String(), info: TokenInfo }),
  },
  'token.list': {
    description: 'Lists tokens (metadata only; secrets are never stored).',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Empty,
    result: Strict({ tokens: Type.Array(TokenInfo) }),
  },
  'token.revoke': {
    description: 'Revokes a token; its open connections are closed with 4001 within a second.',
    scopes: ['operator.admin'],
    roles: ['client'],
    payload: Strict({ token_id: TokenId }),
    result: Strict({ token_id: TokenId, revoked_at: IsoTime }),
  },
} as const satisfies Record<string, OperationSpec>;

export type OperationType = keyof typeof OPERATIONS;

export interface EventSpec {
  readonly description: string;
  /** Connections holding any of these scopes receive the event. */
  readonly audience: readonly ScopeT[];
  readonly payload: TSchema;
}

export const EVENTS = {
  'auth.failed': {
    description: 'An upgrade or handshake failed authentication.',
    audience: ['operator.admin'],
    payload: Strict({
      reason: Type.String(),
      remote_address: Type.String(),
      token_id: Type.Union([TokenId, Type.Null()]),
      close_code: Type.Union([Type.Integer(), Type.Null()]),
      http_status: Type.Union([Type.Integer(), Type.Null()]),
    }),
  },
  'authz.denied': {
    description: 'An authenticated peer called an operation its scopes or role do not allow.',
    audience: ['operator.admin'],
    payload: Strict({
      request_type: Type.String(),
      client_id: Type.String(),
      device_id: Type.String(),
      role: Role,
      token_id: TokenId,
      required_scopes: Type.Array(Scope),
    }),
  },
} as const satisfies Record<string, EventSpec>;

export type EventType = keyof typeof EVENTS;
