/**
 * Step postconditions: a check on the tool's output that must hold for the step to count as a
 * success. `{ path, exists: true }`, `{ path, equals: <json> }` or `{ path, matches: <regex> }`,
 * where `path` is an RFC 6901 JSON pointer into the output. Anything that cannot be checked
 * (missing value, wrong type, oversized string) fails: never reported as success.
 */
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';

export interface Postcondition {
  /** RFC 6901 JSON pointer: '' is the whole output, '/a/0' the first item of a. */
  path: string;
  exists?: true;
  equals?: unknown;
  /** An ECMAScript regular expression (no flags) a string value must match. */
  matches?: string;
}

export const POSTCONDITION_MAX_PATH = 1024;
export const POSTCONDITION_MAX_PATTERN = 256;
/** Longest string value a `matches` check will run on (bounds regex time). */
export const POSTCONDITION_MAX_SUBJECT = 65_536;

export interface PostconditionResult {
  ok: boolean;
  reason: string;
}

/** Throws invalid_request unless `pc` is a well-formed postcondition. */
export function validatePostcondition(pc: unknown, where: string): Postcondition {
  const bad = (why: string): never => {
    throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `${where}: ${why}`, { path: where });
  };
  if (typeof pc !== 'object' || pc === null || Array.isArray(pc)) return bad('postcondition must be an object');
  const o = pc as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['path', 'exists', 'equals', 'matches'].includes(k)) bad(`unknown postcondition key ${JSON.stringify(k)}`);
  if (typeof o.path !== 'string' || o.path.length > POSTCONDITION_MAX_PATH || (o.path !== '' && !o.path.startsWith('/'))) {
    bad('postcondition path must be a JSON pointer ("" or starting with "/")');
  }
  if (typeof o.path === 'string' && /~[^01]|~$/.test(o.path)) bad('postcondition path has an invalid ~ escape');
  const checks = ['exists', 'equals', 'matches'].filter((k) => o[k] !== undefined);
  if (checks.length !== 1) bad('postcondition needs exactly one of exists, equals, matches');
  if (o.exists !== undefined && o.exists !== true) bad('postcondition exists must be true');
  if (o.equals !== undefined) {
    try {
      canonicalJson(o.equals);
    } catch {
      bad('postcondition equals must be JSON');
    }
  }
  if (o.matches !== undefined) {
    if (typeof o.matches !== 'string' || o.matches.length > POSTCONDITION_MAX_PATTERN) bad(`postcondition matches must be a regex of at most ${POSTCONDITION_MAX_PATTERN} characters`);
    try {
      new RegExp(o.matches as string, 'u');
    } catch {
      bad('postcondition matches is not a valid regular expression');
    }
  }
  return o as unknown as Postcondition;
}

/** Resolves an RFC 6901 pointer; own properties only (never the prototype chain). */
export function resolvePointer(doc: unknown, pointer: string): { found: true; value: unknown } | { found: false } {
  if (pointer === '') return { found: true, value: doc };
  let cur: unknown = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token) || Number(token) >= cur.length) return { found: false };
      cur = cur[Number(token)];
    } else if (typeof cur === 'object' && cur !== null) {
      if (!Object.prototype.hasOwnProperty.call(cur, token)) return { found: false };
      cur = (cur as Record<string, unknown>)[token];
    } else {
      return { found: false };
    }
  }
  return { found: true, value: cur };
}

/** Checks the postcondition against the tool's (unredacted) output. */
export function checkPostcondition(pc: Postcondition, output: unknown): PostconditionResult {
  const at = resolvePointer(output, pc.path);
  const where = `at ${JSON.stringify(pc.path)}`;
  if (!at.found) return { ok: false, reason: `no value ${where}` };
  if (pc.exists === true) return { ok: true, reason: `a value exists ${where}` };
  if (pc.equals !== undefined) {
    let same = false;
    try {
      same = canonicalJson(at.value) === canonicalJson(pc.equals);
    } catch {
      return { ok: false, reason: `the value ${where} is not JSON` };
    }
    return same ? { ok: true, reason: `the value ${where} equals the expected value` } : { ok: false, reason: `the value ${where} differs from the expected value` };
  }
  if (pc.matches !== undefined) {
    if (typeof at.value !== 'string') return { ok: false, reason: `the value ${where} is not a string` };
    if (at.value.length > POSTCONDITION_MAX_SUBJECT) return { ok: false, reason: `the value ${where} is too long to check (over ${POSTCONDITION_MAX_SUBJECT} characters)` };
    return new RegExp(pc.matches, 'u').test(at.value) ? { ok: true, reason: `the value ${where} matches` } : { ok: false, reason: `the value ${where} does not match ${pc.matches}` };
  }
  return { ok: false, reason: 'the postcondition names no check' };
}
