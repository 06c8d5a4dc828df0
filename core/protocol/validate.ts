/**
 * Contract validation at the boundary: ajv over the TypeBox schemas, compiled once.
 * Never coerces, never fills defaults, never strips keys: a frame is accepted as sent or
 * rejected. Ajv runs with allErrors off (its docs advise against allErrors on untrusted input:
 * the work grows with the input), so a failure reports the first problem found.
 */
import { Ajv, type ValidateFunction, type ErrorObject } from 'ajv';
import type { TSchema } from '@sinclair/typebox';

/** One schema violation, as sent in `error.details.issues`. */
export interface Issue {
  path: string;
  message: string;
}

const MAX_ISSUES = 10;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

const ajv = new Ajv({
  allErrors: false,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  strict: true,
  validateFormats: true,
});
ajv.addFormat('uuid', UUID);
ajv.addFormat('date-time', { validate: (s: string) => DATE_TIME.test(s) && !Number.isNaN(Date.parse(s)) });

const cache = new WeakMap<TSchema, ValidateFunction>();

function compiled(schema: TSchema): ValidateFunction {
  let fn = cache.get(schema);
  if (!fn) {
    fn = ajv.compile(schema);
    cache.set(schema, fn);
  }
  return fn;
}

function toIssues(errors: ErrorObject[] | null | undefined): Issue[] {
  return (errors ?? []).slice(0, MAX_ISSUES).map((e) => ({
    path: e.instancePath === '' ? '/' : e.instancePath,
    // Unknown keys are peer input: quote a bounded prefix only.
    message: e.keyword === 'additionalProperties' ? `unknown key ${JSON.stringify(String((e.params as { additionalProperty?: string }).additionalProperty).slice(0, 64))}` : (e.message ?? e.keyword),
  }));
}

/** Validates `value` against `schema`; returns the issues, empty when valid. */
export function validate(schema: TSchema, value: unknown): Issue[] {
  const fn = compiled(schema);
  return fn(value) ? [] : toIssues(fn.errors);
}

/** Compiles a schema eagerly (at start-up, so a bad schema fails fast rather than on first use). */
export function precompile(schema: TSchema): void {
  compiled(schema);
}
