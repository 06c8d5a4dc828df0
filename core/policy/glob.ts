/**
 * Policy globs: `*` matches any run of characters (none included, "." included); every other
 * character matches itself. One rule for tool ids, plugin ids, hosts and secret handles, so an
 * operator never has to remember which dialect a field speaks.
 *
 * Why not `*` = "within one dotted segment": deny rules are the ones that must not miss, and
 * `*.evil.example` should deny `a.b.evil.example` too. A single `*` at the start of a pattern
 * still cannot jump over literal text, so `*.example.com` never matches `example.com.evil`.
 *
 * Matching is linear-space and O(pattern × value) in the worst case, never exponential (no
 * regular expressions are built from operator input).
 */
import { POLICY_GLOB_CHARSETS, policyGlobPattern, type PolicyGlobKind } from '../../schemas/src/policy.js';

const VALID: Record<PolicyGlobKind, RegExp> = {
  tools: new RegExp(policyGlobPattern('tools'), 'u'),
  plugins: new RegExp(policyGlobPattern('plugins'), 'u'),
  egress_hosts: new RegExp(policyGlobPattern('egress_hosts'), 'u'),
  secrets: new RegExp(policyGlobPattern('secrets'), 'u'),
};

const SHOWN: Record<PolicyGlobKind, string> = {
  tools: 'letters, digits, "_", ".", "-"',
  plugins: 'lowercase letters, digits, "-"',
  egress_hosts: 'lowercase letters, digits, ".", "-", ":", "[", "]"',
  secrets: 'uppercase letters, digits, "_"',
};

/** Why `pattern` is not a valid glob of `kind`, or null when it is. */
export function globProblem(kind: PolicyGlobKind, pattern: string): string | null {
  if (pattern.length === 0) return 'empty pattern';
  if (pattern.length > 255) return 'pattern longer than 255 characters';
  if (pattern.includes('**')) return `"**" is not supported: a single "*" already matches any characters, "." included`;
  if (!VALID[kind].test(pattern)) {
    const bad = [...pattern].find((c) => c !== '*' && !new RegExp(`^[${POLICY_GLOB_CHARSETS[kind]}]$`, 'u').test(c)) ?? '?';
    const extra = kind === 'egress_hosts' && /[A-Z]/.test(bad) ? ' (host patterns are lowercase)' : '';
    return `invalid character ${JSON.stringify(bad)} in pattern: use ${SHOWN[kind]} and "*"${extra}`;
  }
  return null;
}

/** True when `value` matches `pattern` in full (`*` = any run of characters). */
export function globMatch(pattern: string, value: string): boolean {
  // Classic wildcard matching with one remembered star: on a mismatch, let the last star
  // swallow one more character. Each backtrack advances `mark`, so the loop is O(p × v).
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = v;
    } else if (p < pattern.length && pattern[p] === value[v]) {
      p++;
      v++;
    } else if (star >= 0) {
      p = star + 1;
      v = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}
