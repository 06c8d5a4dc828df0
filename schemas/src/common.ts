/** Shared building blocks of the wire contract. */
import { Type, type TSchema, type TProperties, type ObjectOptions } from '@sinclair/typebox';

/** A strict object: unknown keys are rejected, as PROTOCOL.md requires of every object. */
export function Strict<T extends TProperties>(properties: T, options: ObjectOptions = {}) {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

export const SCOPES = ['operator.read', 'operator.write', 'operator.approvals', 'operator.pairing', 'operator.admin', 'operator.metrics'] as const;
export type Scope = (typeof SCOPES)[number];
export const Scope = Type.Union(SCOPES.map((s) => Type.Literal(s)), { description: 'An operator scope.' });

export const ROLES = ['client', 'node'] as const;
export type Role = (typeof ROLES)[number];
export const Role = Type.Union(ROLES.map((r) => Type.Literal(r)), { description: 'The role a peer connects as.' });

export { WIRE_ERROR_CODES, type WireErrorCode } from './wire-codes.js';

/** A short opaque identifier chosen by the sender. */
export const RequestId = Type.String({ minLength: 1, maxLength: 128 });
export const RequestType = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$' });
export const IsoTime = Type.String({ format: 'date-time', description: 'ISO-8601 timestamp (UTC).' });
/** base64url without padding. */
export const B64Url = (options: { minLength?: number; maxLength?: number; description?: string } = {}) =>
  Type.String({ pattern: '^[A-Za-z0-9_-]*$', ...options });
export const Uuid = Type.String({ format: 'uuid' });
export const DeviceId = Type.String({ pattern: '^dev_[a-z2-7]{52}$', description: 'dev_ + base32(sha256(pubkey DER)), lowercase, no padding.' });
export const TokenId = Type.String({ pattern: '^[0-9a-f]{16}$', description: 'The public id part of an access token.' });

/** A free-form JSON object (payloads are validated per type). */
export const JsonObject = Type.Record(Type.String(), Type.Unknown());

export type { TSchema };
