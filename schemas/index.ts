/**
 * The contract source of truth. `CONTRACTS` maps each published schema name to its TypeBox
 * definition; `npm run gen` writes them as JSON Schema to schemas/json/<name>.json, which the
 * gateway serves at GET /contracts/<name>.json.
 */
import type { TSchema } from '@sinclair/typebox';
import { RequestEnvelope, ResponseEnvelope, EventEnvelope, ErrorBody } from './src/envelope.js';
import { OPERATIONS, EVENTS } from './src/operations.js';
import { GatewayConfig } from './src/config.js';
import { PluginManifest, PluginGrant } from './src/manifest.js';
import { PolicyBundle } from './src/policy.js';
import { McpServerSpec } from './src/mcp.js';
import { Playbook } from './src/playbook.js';

export * from './src/common.js';
export * from './src/envelope.js';
export * from './src/handshake.js';
export * from './src/operations.js';
export * from './src/config.js';
export * from './src/manifest.js';
export * from './src/policy.js';
export * from './src/mcp.js';
export * from './src/playbook.js';

/** JSON Schema dialect of every emitted file. */
export const JSON_SCHEMA_DIALECT = 'http://json-schema.org/draft-07/schema#';

function contracts(): Record<string, TSchema> {
  const out: Record<string, TSchema> = {
    'envelope.request': RequestEnvelope,
    'envelope.response': ResponseEnvelope,
    'envelope.event': EventEnvelope,
    error: ErrorBody,
    'config.gateway': GatewayConfig,
    'plugin.manifest': PluginManifest,
    'plugin.grant': PluginGrant,
    'policy.bundle': PolicyBundle,
    'mcp.server': McpServerSpec,
    playbook: Playbook,
  };
  for (const [type, spec] of Object.entries(OPERATIONS)) {
    out[`op.${type}.payload`] = spec.payload;
    out[`op.${type}.result`] = spec.result;
  }
  for (const [type, spec] of Object.entries(EVENTS)) out[`event.${type}`] = spec.payload;
  return out;
}

/** Every published contract by name (sorted). */
export const CONTRACTS: Readonly<Record<string, TSchema>> = Object.freeze(
  Object.fromEntries(Object.entries(contracts()).sort(([a], [b]) => (a < b ? -1 : 1))),
);

/** The JSON Schema document published for contract `name` (what schemas/json/<name>.json holds). */
export function contractDocument(name: string): Record<string, unknown> | undefined {
  const schema = Object.hasOwn(CONTRACTS, name) ? CONTRACTS[name] : undefined;
  if (schema === undefined) return undefined;
  // JSON round trip drops TypeBox's symbol-keyed metadata, leaving plain JSON Schema.
  return { $schema: JSON_SCHEMA_DIALECT, $id: `urn:tyrum:contract:v1:${name}`, title: name, ...(JSON.parse(JSON.stringify(schema)) as object) };
}
