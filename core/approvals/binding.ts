/**
 * What an approval is bound to. An approval covers exactly one call: the RFC 8785 canonical
 * arguments (by hash), the tool definition (by hash) and the plugin build (by digest). Any
 * difference at execution time means the call is not the one a human approved.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../util/canonical-json.js';

export interface Binding {
  args_hash: string;
  definition_hash: string;
  plugin_digest: string;
}

export const BINDING_FIELDS = ['args_hash', 'definition_hash', 'plugin_digest'] as const satisfies ReadonlyArray<keyof Binding>;

/** sha256 (hex) of the RFC 8785 canonical JSON of the arguments. */
export function argsHash(args: unknown): string {
  return createHash('sha256').update(canonicalJson(args), 'utf8').digest('hex');
}

/** The binding fields that differ between what was approved and what is about to run. */
export function bindingMismatch(approved: Binding, actual: Binding): Array<keyof Binding> {
  return BINDING_FIELDS.filter((k) => approved[k] !== actual[k]);
}
