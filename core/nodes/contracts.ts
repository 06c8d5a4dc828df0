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

/** A built-in capability as the gateway uses it: the contract, its hash, and its schemas as plain JSON. */
export interface KnownCapability {
  contract: CapabilityContract;
  definition_hash: string;
  input_schema: Record<string, unknown>;
  output_schema: Record<string, unknown>;
}

/** Computed once per built-in id@version (contracts do not change while the gateway runs). */
const KNOWN = new Map<string, KnownCapability>();

/** The built-in capability `id@version` with its hash and JSON schemas, if the gateway knows it. */
export function knownCapability(id: string, version: string): KnownCapability | undefined {
  const key = `${id}@${version}`;
  const hit = KNOWN.get(key);
  if (hit) return hit;
  const k = contractOf(id, version);
  if (!k) return undefined;
  const input = JSON.parse(JSON.stringify(k.input_schema)) as Record<string, unknown>;
  const output = JSON.parse(JSON.stringify(k.output_schema)) as Record<string, unknown>;
  const definition = { id: k.id, version: k.version, description: k.description, idempotent: k.idempotent, input_schema: input, output_schema: output };
  const known: KnownCapability = { contract: k, definition_hash: sha256(canonicalJson(definition)), input_schema: input, output_schema: output };
  KNOWN.set(key, known);
  return known;
}

/**
 * What a capability is pinned by at approval: the hash of its contract (id, version, description,
 * idempotency and both schemas) when the gateway knows one, else of its id and version.
 */
export function capabilityRef(c: { id: string; version: string }): CapabilityRef {
  const hash = knownCapability(c.id, c.version)?.definition_hash ?? sha256(canonicalJson({ id: c.id, version: c.version }));
  return { id: c.id, version: c.version, definition_hash: hash };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
