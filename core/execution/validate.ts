/**
 * Checks a submission before anything is stored (reject, never coerce) and derives the
 * request hash that idempotency compares: sha256 of the RFC 8785 canonical submission.
 */
import { createHash } from 'node:crypto';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { validatePostcondition } from './postcondition.js';
import type { StepInput, SubmitInput } from './types.js';

export const MAX_STEPS = 64;
export const MAX_ARGS_BYTES = 1024 * 1024;
export const MAX_ID_LENGTH = 200;
export const MAX_ATTEMPTS_LIMIT = 10;
export const MAX_TIMEOUT_MS = 60 * 60 * 1000;

const STEP_KEYS = new Set(['tool_id', 'args', 'idempotency_key', 'max_attempts', 'timeout_ms', 'postcondition']);
const SUBMIT_KEYS = new Set(['kind', 'steps', 'idempotency_key', 'created_by', 'actor', 'tenant_id']);

function bad(message: string, path: string): never {
  throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `${path}: ${message}`, { path });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function checkId(v: unknown, path: string): void {
  if (typeof v !== 'string' || v.length < 1 || v.length > MAX_ID_LENGTH) bad(`must be a string of 1 to ${MAX_ID_LENGTH} characters`, path);
}

function checkInt(v: unknown, min: number, max: number, path: string): void {
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) bad(`must be an integer from ${min} to ${max}`, path);
}

/** Throws invalid_request unless `input` is a well-formed submission. */
export function validateSubmit(input: SubmitInput): void {
  if (!isPlainObject(input)) bad('must be an object', 'submit');
  for (const k of Object.keys(input)) if (!SUBMIT_KEYS.has(k)) bad(`unknown key ${JSON.stringify(k)}`, 'submit');
  if (input.kind !== 'tool' && input.kind !== 'workflow') bad('must be "tool" or "workflow"', 'kind');
  checkId(input.created_by, 'created_by');
  if (input.tenant_id !== undefined) checkId(input.tenant_id, 'tenant_id');
  if (input.idempotency_key !== undefined) checkId(input.idempotency_key, 'idempotency_key');
  if (!Array.isArray(input.steps) || input.steps.length < 1 || input.steps.length > MAX_STEPS) bad(`must be an array of 1 to ${MAX_STEPS} steps`, 'steps');
  if (input.kind === 'tool' && input.steps.length !== 1) bad('a tool run has exactly one step', 'steps');
  input.steps.forEach((s, i) => validateStep(s, `steps/${i}`));
}

function validateStep(s: StepInput, path: string): void {
  if (!isPlainObject(s)) bad('must be an object', path);
  for (const k of Object.keys(s)) if (!STEP_KEYS.has(k)) bad(`unknown key ${JSON.stringify(k)}`, path);
  checkId(s.tool_id, `${path}/tool_id`);
  if (!isPlainObject(s.args)) bad('must be an object', `${path}/args`);
  let text: string;
  try {
    text = canonicalJson(s.args);
  } catch (e) {
    return bad(`must be JSON (${(e as Error).message})`, `${path}/args`);
  }
  if (Buffer.byteLength(text, 'utf8') > MAX_ARGS_BYTES) bad(`must be at most ${MAX_ARGS_BYTES} bytes as JSON`, `${path}/args`);
  if (s.idempotency_key !== undefined) checkId(s.idempotency_key, `${path}/idempotency_key`);
  if (s.max_attempts !== undefined) checkInt(s.max_attempts, 1, MAX_ATTEMPTS_LIMIT, `${path}/max_attempts`);
  if (s.timeout_ms !== undefined) checkInt(s.timeout_ms, 1, MAX_TIMEOUT_MS, `${path}/timeout_ms`);
  if (s.postcondition !== undefined) validatePostcondition(s.postcondition, `${path}/postcondition`);
}

/** sha256 (hex) of the canonical submission (everything but the creator and audit actor). */
export function requestHash(input: SubmitInput): string {
  const steps = input.steps.map((s) => ({
    tool_id: s.tool_id,
    args: s.args,
    idempotency_key: s.idempotency_key,
    max_attempts: s.max_attempts,
    timeout_ms: s.timeout_ms,
    postcondition: s.postcondition,
  }));
  return createHash('sha256').update(canonicalJson({ kind: input.kind, steps }), 'utf8').digest('hex');
}
