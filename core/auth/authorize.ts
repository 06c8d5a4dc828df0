/**
 * Per-method authorization against the one table in schemas/src/operations.ts.
 * Pure: the caller audits and emits `authz.denied`.
 */
import type { OperationSpec, Scope, Role } from '../../schemas/index.js';

export interface Principal {
  scopes: readonly Scope[];
  role: Role;
}

export type AuthzDecision = { allowed: true } | { allowed: false; reason: 'role' | 'scope'; required: readonly Scope[] };

/** Allowed when the role is listed and the principal holds any one of the listed scopes. */
export function authorize(spec: Pick<OperationSpec, 'scopes' | 'roles'>, who: Principal): AuthzDecision {
  if (!spec.roles.includes(who.role)) return { allowed: false, reason: 'role', required: spec.scopes === 'any' ? [] : spec.scopes };
  if (spec.scopes === 'any') return { allowed: true };
  return spec.scopes.some((s) => who.scopes.includes(s)) ? { allowed: true } : { allowed: false, reason: 'scope', required: spec.scopes };
}
