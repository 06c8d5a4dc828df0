/**
 * Node capability contracts as the gateway pins them: the built-in ones (schemas/src/capabilities.ts)
 * and the hash a capability is approved by. Small on purpose: the CLI's home loads it.
 */
import { createHash } from 'node:crypto';
import { BUILTIN_CAPABILITIES, type CapabilityContract } from '../../schemas/src/capabilities.js';
import { canonicalJson } from '../util/canonical-json.js';
import type { CapabilityRef } from './pairing.js';

const CONTRACTS: Readonly<Record<string, CapabilityContract>> = BUILTIN_CAPABILITIES;

/** The built-in contract of a capability id and version, if the gateway knows one. */
export function contractOf(id: string, version: string): CapabilityContract | undefined {
  const c = Object.hasOwn(CONTRACTS, id) ? CONTRACTS[id] : undefined;
  return c && c.version === version ? c : undefined;
}

/**
 * What a capability is pinned by at approval: the hash of its contract (id, version, description,
 * idempotency and both schemas) when the gateway knows one, else of its id and version.
 */
export function capabilityRef(c: { id: string; version: string }): CapabilityRef {
  const k = contractOf(c.id, c.version);
  const definition = k ? { id: k.id, version: k.version, description: k.description, idempotent: k.idempotent, input_schema: k.input_schema, output_schema: k.output_schema } : { id: c.id, version: c.version };
  return { id: c.id, version: c.version, definition_hash: sha256(canonicalJson(JSON.parse(JSON.stringify(definition)))) };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
