/**
 * The audit entry and its hash: the one definition shared by appending and verifying, so the
 * two can never disagree about what an entry's hash covers.
 */
import { createHash } from 'node:crypto';
import type { AuditRow } from '../store/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { TyrumError } from '../errors/index.js';

/** `prev_hash` of entry 1: there is nothing before it. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * Who caused an entry. Known kinds: `{kind:'token', id}`, `{kind:'cli'}`,
 * `{kind:'anonymous', ip}`; the shape stays open so new subsystems can add kinds.
 */
export interface AuditActor {
  readonly kind: string;
  readonly [key: string]: unknown;
}

/** One entry of the log, with `actor` and `data` parsed. */
export interface AuditEntry {
  seq: number;
  ts: string;
  type: string;
  actor: AuditActor;
  data: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

/** The fields an entry's hash covers: everything but the hash itself. */
export type HashedFields = Omit<AuditEntry, 'hash'>;

/** sha256 (hex) of the canonical JSON of everything in the entry except `hash`. */
export function hashEntry(fields: HashedFields): string {
  const { seq, ts, type, actor, data, prev_hash } = fields;
  return createHash('sha256').update(canonicalJson({ seq, ts, type, actor, data, prev_hash }), 'utf8').digest('hex');
}

// Dotted lower-case names ('auth.failed', 'token.created'): clients filter on them, so a typo
// or free text here would silently create a new, unfilterable type.
const TYPE_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;
const MAX_TYPE_LENGTH = 100;

/** Throws TYRUM_ERR_INVALID_ARGUMENT unless `type` is a dotted lower-case name. */
export function assertEntryType(type: string): void {
  if (typeof type !== 'string' || type.length > MAX_TYPE_LENGTH || !TYPE_RE.test(type)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `invalid audit entry type ${JSON.stringify(type)}: expected a dotted lower-case name such as "auth.failed"`, { type });
  }
}

/**
 * `value` as a plain JSON object. The JSON round trip applies `toJSON` (a Date becomes its ISO
 * string rather than `{}`) and drops functions, so what is hashed is exactly what a reader
 * parses back from the stored text.
 */
export function toJsonObject(value: unknown, what: string): Record<string, unknown> {
  let plain: unknown;
  try {
    const text = JSON.stringify(value);
    plain = text === undefined ? undefined : JSON.parse(text);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `audit ${what} is not JSON-serializable: ${(e as Error).message}`, undefined, { cause: e });
  }
  if (!isPlainObject(plain)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `audit ${what} must be a JSON object`);
  }
  return plain;
}

/** Throws TYRUM_ERR_INVALID_ARGUMENT unless `actor` carries a non-empty string `kind`. */
export function assertActor(actor: Record<string, unknown>): asserts actor is AuditActor {
  if (typeof actor.kind !== 'string' || actor.kind === '') {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'audit actor must have a non-empty string "kind"');
  }
}

/** A stored row with `actor` and `data` parsed. Throws (SyntaxError) on unparsable text. */
export function entryFromRow(row: AuditRow): AuditEntry {
  return { ...row, actor: JSON.parse(row.actor) as AuditActor, data: JSON.parse(row.data) as Record<string, unknown> };
}

/** The tenant an entry belongs to: its actor's `tenant`, or the default tenant's when it names none. */
export function entryTenant(actor: AuditActor): string {
  return typeof actor.tenant === 'string' ? actor.tenant : 'default';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
