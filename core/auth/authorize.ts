/**
 * Per-method authorization against the one table in schemas/src/operations.ts.
 * Pure: the caller audits and emits `authz.denied`.
 */
import { DEFAULT_TENANT, TENANT_OPERATIONS, type OperationSpec, type OperationType, type Scope, type Role } from '../../schemas/index.js';

export interface Principal {
  scopes: readonly Scope[];
  role: Role;
  /** The tenant of the principal's token; absent means the default (host) tenant. */
  tenant?: string;
}

export type AuthzDecision = { allowed: true } | { allowed: false; reason: 'role' | 'scope' | 'tenant'; required: readonly Scope[] };

/**
 * Allowed when the role is listed and the principal holds any one of the listed scopes. With
 * `type`, a principal of a tenant other than the default may call only the operations scoped to
 * a tenant (TENANT_OPERATIONS): the others manage host-wide resources (docs/tenancy.md).
 */
export function authorize(spec: Pick<OperationSpec, 'scopes' | 'roles'>, who: Principal, type?: OperationType): AuthzDecision {
  if (type !== undefined && (who.tenant ?? DEFAULT_TENANT) !== DEFAULT_TENANT && !TENANT_OPERATIONS.has(type)) return { allowed: false, reason: 'tenant', required: [] };
  if (!spec.roles.includes(who.role)) return { allowed: false, reason: 'role', required: spec.scopes === 'any' ? [] : spec.scopes };
  if (spec.scopes === 'any') return { allowed: true };
  return spec.scopes.some((s) => who.scopes.includes(s)) ? { allowed: true } : { allowed: false, reason: 'scope', required: spec.scopes };
}
