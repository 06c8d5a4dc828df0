/** connect.init / connect.proof (PROTOCOL.md "Handshake"). */
import { Type } from '@sinclair/typebox';
import { Strict, Role, Scope, DeviceId, B64Url, Uuid } from './common.js';

export const Device = Strict({
  device_id: DeviceId,
  pubkey: B64Url({ minLength: 16, maxLength: 256, description: 'Ed25519 public key, DER SPKI, base64url without padding.' }),
  label: Type.Optional(Type.String({ maxLength: 128 })),
  platform: Type.Optional(Type.String({ maxLength: 64 })),
  version: Type.Optional(Type.String({ maxLength: 64 })),
  mode: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'What kind of peer this is, shown in presence: e.g. "cli", "ui", "node", "browser-node".' })),
});

export const Capability = Strict({ id: Type.String({ minLength: 1, maxLength: 128 }), version: Type.String({ minLength: 1, maxLength: 32 }) });

export const ConnectInitPayload = Strict({
  protocol_rev: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  role: Role,
  device: Device,
  capabilities: Type.Array(Capability, { maxItems: 256 }),
});
export const ConnectInitResult = Strict({ connection_id: Uuid, challenge: B64Url({ minLength: 43, maxLength: 43 }) });

export const ConnectProofPayload = Strict({ connection_id: Uuid, proof: B64Url({ minLength: 86, maxLength: 86, description: 'Ed25519 signature over the transcript.' }) });
export const ConnectProofResult = Strict({ client_id: Type.String(), device_id: DeviceId, role: Role, scopes: Type.Array(Scope) });
