/**
 * Reading a policy bundle from a JSON file (`tyrum policy set FILE`). Strict JSON: a duplicate
 * key is refused rather than silently resolved, because `"decision": "deny", "decision": "allow"`
 * must not quietly mean allow.
 */
import { readFileSync, statSync } from 'node:fs';
import type { PolicyBundle } from '../../schemas/src/policy.js';
import { TyrumError } from '../errors/index.js';
import { JsonReadError, readJson } from '../../manifests/json.js';
import { parseBundle } from './bundle.js';

/** Largest policy file accepted. */
export const POLICY_FILE_MAX_BYTES = 1024 * 1024;
/** Deepest JSON nesting accepted (a bundle needs 5: bundle, rules, rule, match, list). */
export const POLICY_FILE_MAX_DEPTH = 8;

/**
 * Reads and validates the bundle in `path`. Throws TYRUM_ERR_INVALID_ARGUMENT when the file
 * cannot be read, TYRUM_ERR_POLICY_INVALID (naming line/column or JSON pointer) when its
 * content is not a valid bundle.
 */
export function readBundleFile(path: string): PolicyBundle {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `policy file ${path}: not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof TyrumError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `policy file ${path}: ${code === 'ENOENT' ? 'not found' : (e as Error).message}`, undefined, { cause: e });
  }
  if (size > POLICY_FILE_MAX_BYTES) {
    throw new TyrumError('TYRUM_ERR_POLICY_INVALID', `${path}: ${size} bytes, above the ${POLICY_FILE_MAX_BYTES}-byte limit for a policy file`, { size, limit: POLICY_FILE_MAX_BYTES });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(path));
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_ENCODING_INVALID_ENCODED_DATA') throw new TyrumError('TYRUM_ERR_POLICY_INVALID', `${path}: not valid UTF-8`);
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `policy file ${path}: ${(e as Error).message}`, undefined, { cause: e });
  }
  let value: unknown;
  try {
    value = readJson(text.replace(/^\uFEFF/, ''), { maxDepth: POLICY_FILE_MAX_DEPTH });
  } catch (e) {
    if (e instanceof JsonReadError) throw new TyrumError('TYRUM_ERR_POLICY_INVALID', `${path}: ${e.message}`, { line: e.line, column: e.column, path: e.pointer });
    throw e;
  }
  return parseBundle(value, path);
}
