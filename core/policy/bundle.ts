/**
 * Policy bundles as values: validation (schema, then the rules a schema cannot say) and
 * content-addressed snapshot ids. No I/O.
 */
import { createHash } from 'node:crypto';
import { PolicyBundle as PolicyBundleSchema, POLICY_EFFECTS, POLICY_MODES, POLICY_VERDICTS, POLICY_VERSION, type PolicyBundle, type PolicyDecision, type PolicyGlobKind } from '../../schemas/src/policy.js';
import { RISK_FLAGS } from '../../schemas/src/manifest.js';
import { validate, type Issue } from '../protocol/validate.js';
import { canonicalJson } from '../util/canonical-json.js';
import { TyrumError } from '../errors/index.js';
import { globProblem } from './glob.js';

/** The bundle in force before an operator sets one: no rules, built-in defaults, enforced. */
export function defaultBundle(): PolicyBundle {
  return { policy_version: 1, mode: 'enforce', rules: [] };
}

/**
 * The snapshot id of `bundle`: `pol_` + the full sha256 hex of its RFC 8785 canonical JSON.
 * Key order and whitespace do not change it; any change of content does (including writing a
 * built-in default out explicitly, or reordering rules, which is harmless but different text).
 */
export function snapshotId(bundle: PolicyBundle): string {
  return snapshotIdOfCanonical(canonicalJson(bundle));
}

/** The snapshot id of a bundle already in canonical JSON text. */
export function snapshotIdOfCanonical(text: string): string {
  return 'pol_' + createHash('sha256').update(text).digest('hex');
}

const GLOB_PATH = /^\/rules\/(\d+)\/match\/(tools|plugins|egress_hosts|secrets)\/(\d+)$/;

/** Where the bundle holds a closed set of strings, and that set. */
const CHOICES: Array<[RegExp, readonly string[]]> = [
  [/^\/mode$/, POLICY_MODES],
  [/^\/defaults\/[a-z_]+$/, POLICY_VERDICTS],
  [/^\/rules\/\d+\/decision$/, POLICY_VERDICTS],
  [/^\/rules\/\d+\/match\/effects\/\d+$/, POLICY_EFFECTS],
  [/^\/rules\/\d+\/match\/risks\/\d+$/, RISK_FLAGS],
];

/** The value at JSON pointer `path` in `root` (undefined when absent). */
function at(root: unknown, path: string): unknown {
  let v = root;
  for (const token of path.split('/').slice(1)) {
    if (v === null || typeof v !== 'object') return undefined;
    const key = token.replace(/~1/g, '/').replace(/~0/g, '~');
    v = Object.hasOwn(v, key) ? (v as Record<string, unknown>)[key] : undefined;
  }
  return v;
}

/**
 * Ajv's messages, made readable for an operator: a refused glob says why, a wrong enum value
 * lists the choices (instead of one "must be equal to constant" per choice). One issue per path.
 */
function readable(issues: Issue[], value: unknown): Issue[] {
  const out: Issue[] = [];
  for (const issue of issues) {
    if (out.some((o) => o.path === issue.path)) continue;
    const got = at(value, issue.path);
    const shown = JSON.stringify(got)?.slice(0, 64) ?? 'nothing';
    const glob = GLOB_PATH.exec(issue.path);
    const problem = glob !== null && typeof got === 'string' ? globProblem(glob[2] as PolicyGlobKind, got) : null;
    const choices = CHOICES.find(([re]) => re.test(issue.path))?.[1];
    if (problem !== null) out.push({ path: issue.path, message: `invalid glob ${shown}: ${problem}` });
    else if (choices !== undefined && (issue.message === 'must be equal to constant' || issue.message.startsWith('must match a schema in anyOf'))) {
      out.push({ path: issue.path, message: `must be one of ${choices.map((c) => JSON.stringify(c)).join(', ')} (got ${shown})` });
    } else if (issue.path === '/policy_version' && issue.message === 'must be equal to constant') {
      out.push({ path: issue.path, message: `must be ${POLICY_VERSION} (got ${shown}): this gateway reads policy_version ${POLICY_VERSION}` });
    } else out.push(issue);
  }
  return out;
}

/** Every problem with `value` as a policy bundle (empty when valid). Paths are JSON pointers. */
export function bundleIssues(value: unknown): Issue[] {
  // Glob syntax is part of the schema (a pattern per kind); `readable` only improves the message.
  const schemaIssues = validate(PolicyBundleSchema, value);
  if (schemaIssues.length > 0) return readable(schemaIssues, value);
  const bundle = value as PolicyBundle;
  const issues: Issue[] = [];
  const seen = new Map<string, number>();
  bundle.rules.forEach((rule, i) => {
    const first = seen.get(rule.id);
    if (first !== undefined) issues.push({ path: `/rules/${i}/id`, message: `duplicate rule id ${JSON.stringify(rule.id)} (first at /rules/${first}/id)` });
    else seen.set(rule.id, i);
  });
  return issues;
}

/**
 * `value` as a valid policy bundle, or TYRUM_ERR_POLICY_INVALID naming each problem's path.
 * `source` (a file name, "policy.set") prefixes the message.
 */
export function parseBundle(value: unknown, source = 'policy bundle'): PolicyBundle {
  const issues = bundleIssues(value);
  if (issues.length > 0) {
    throw new TyrumError('TYRUM_ERR_POLICY_INVALID', `${source}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
  }
  return value as PolicyBundle;
}

/** The error to answer a call the policy denies with (wire code `policy_denied`). */
export function policyDeniedError(toolId: string, d: PolicyDecision): TyrumError {
  return new TyrumError('TYRUM_ERR_POLICY_DENIED', `policy denies ${toolId}: ${d.reasons.join('; ')}`, {
    tool_id: toolId,
    snapshot_id: d.snapshot_id,
    source: d.source,
    matched: d.matched,
  });
}
