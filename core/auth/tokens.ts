/**
 * Access tokens. A token is `tyrum_<id>_<secret>`: a 16-hex public id (for lookup, listing and
 * revocation) and a 256-bit random secret. Only a salted scrypt hash of the secret is stored;
 * verification is constant-time.
 *
 * Why scrypt at N=4096 rather than a password-grade cost: the secret has 256 bits of entropy, so
 * brute force is hopeless at any cost, and the hash is computed on the upgrade path (once per
 * token per {@link VERIFIED_CACHE_TTL_MS}: see `TokenService.verified`). The salted KDF is still
 * there so a stolen database does not hand out usable tokens, and the parameters are stored per
 * token (`kdf`) so they can be raised later without a migration.
 */
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { TyrumError } from '../errors/index.js';
import { SCOPES, ROLES, DEFAULT_TENANT, type Scope, type Role } from '../../schemas/index.js';
import type { Store, TokenKind, TokenRecord } from '../store/index.js';

const KDF = { N: 4096, r: 8, p: 1 } as const;
const KDF_LABEL = `scrypt:N=${KDF.N},r=${KDF.r},p=${KDF.p}`;
const TOKEN_RE = /^tyrum_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

function scrypt(secret: string, salt: Buffer, params: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(secret, salt, 32, { ...params, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function parseKdf(label: string): ScryptOptions | null {
  const m = /^scrypt:N=(\d+),r=(\d+),p=(\d+)$/.exec(label);
  return m ? { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) } : null;
}

/** Splits a presented token into id and secret; null when it is not a well-formed token. */
export function parseToken(token: string): { id: string; secret: string } | null {
  const m = TOKEN_RE.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

/** A token that authenticated successfully. */
export interface AuthenticatedToken {
  id: string;
  label: string;
  scopes: Scope[];
  roles: Role[];
  expires_at: number | null;
  kind: TokenKind;
  /** The device a node token is bound to (its handshake must prove that device); null otherwise. */
  device_id: string | null;
  /** A single-use bootstrap token: claimed by the first device at connect.init (Session). Absent: false. */
  single_use?: boolean;
  /** The tenant the token acts in; absent: the default tenant (read it with {@link tenantOf}). */
  tenant_id?: string;
}

/** The tenant an authenticated token (or a record being created) acts in. */
export function tenantOf(token: { tenant_id?: string | undefined }): string {
  return token.tenant_id ?? DEFAULT_TENANT;
}

/** Tenant ids: short, lower-case, safe in logs and file names. */
export const TENANT_ID_RE = /^[a-z][a-z0-9-]{0,62}$/;

export interface CreateTokenInput {
  scopes: readonly string[];
  roles?: readonly string[];
  label?: string;
  /** Lifetime in seconds; omitted means no expiry. */
  ttlSeconds?: number;
  /** Who minted it: a token id, or 'cli'/'bootstrap'. */
  createdBy: string;
  /**
   * The live token minting this one (token.create). The new token may not hold a scope or role
   * the parent lacks, nor expire later than it (a parent with an expiry cannot mint one without);
   * it is recorded as the parent's child and dies with it (revocation or expiry).
   */
  parentId?: string;
  /**
   * 'access' (default) for clients and operators. 'node_enrollment': role node, no scope, an
   * expiry: lets a node connect far enough to ask to be paired. 'node': role node, no scope,
   * bound to `deviceId` (minted when a pairing is approved).
   */
  kind?: TokenKind;
  deviceId?: string;
  /**
   * A single-use node bootstrap token (kind node_enrollment only): the first device that connects
   * with it claims it, any other device is refused, and it is revoked once that device is paired.
   */
  singleUse?: boolean;
  /**
   * The tenant the token acts in (docs/tenancy.md); default 'default'. A minted token
   * (`parentId`) is always in its parent's tenant. Only the default tenant's tokens may be node
   * credentials or carry the node role: nodes are host resources.
   */
  tenant?: string;
}

/** Parses "30d", "12h", "45m", "90s" or a bare number of seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `invalid ttl "${text}": use e.g. 90s, 45m, 12h or 30d`);
  const mult = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const secs = Number(m[1]) * mult;
  if (secs < 60) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `ttl "${text}" is shorter than the minimum of 60s`);
  return secs;
}

/** Entries in the verified-token cache (see `TokenService.authenticate`). */
const VERIFIED_CACHE_MAX = 1024;
/** How long a verified token skips the KDF before it is hashed again. */
const VERIFIED_CACHE_TTL_MS = 5 * 60_000;
/** `last_used_at` is coarse: a use within this long of the recorded one is not noted again. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** Token lifecycle over the store. Audit entries are the caller's job (it knows the actor). */
export class TokenService {
  /**
   * Tokens that recently passed the scrypt check, keyed by HMAC-SHA256 of the presented token
   * under {@link cacheKey}, mapped to their id. Only the KDF is skipped on a hit: the record is
   * still read and checked for revocation, expiry and its minting chain every time, so those apply
   * at once. Neither the secret nor a digest anyone could compute without the key is held.
   */
  private readonly verified = new Map<string, { id: string; until: number }>();
  /** The cache's HMAC key: random per service (so per process), never stored or logged. */
  private readonly cacheKey = randomBytes(32);
  /**
   * Last-use times noted by `authenticate`, written by {@link flushLastUsed}: authentication
   * itself never writes, so the upgrade path has no fsync.
   */
  private readonly lastUsed = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  /** Mints a token. Returns the full token text, which is shown once and never stored. */
  async create(input: CreateTokenInput): Promise<{ token: string; record: TokenRecord }> {
    const scopes = [...new Set(input.scopes)];
    const roles = [...new Set(input.roles ?? ['client'])];
    const badScope = scopes.find((s) => !isScope(s));
    if (badScope !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown scope "${badScope}" (known: ${SCOPES.join(', ')})`);
    const badRole = roles.find((r) => !isRole(r));
    if (badRole !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown role "${badRole}" (known: ${ROLES.join(', ')})`);
    const kind = input.kind ?? 'access';
    if (kind === 'access') {
      if (scopes.length === 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a token needs at least one scope');
      if (input.deviceId !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'only node tokens are bound to a device');
    } else {
      // Node credentials act through the node role only: no operator scope, never a client.
      if (scopes.length > 0 || roles.length !== 1 || roles[0] !== 'node') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `a ${kind} token has the role node and no scopes`);
      if (kind === 'node' && input.deviceId === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a node token is bound to a device id');
      if (kind === 'node_enrollment' && input.ttlSeconds === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'an enrollment token needs an expiry');
      if (kind === 'node_enrollment' && input.deviceId !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'an enrollment token is not bound to a device');
    }
    if (input.singleUse === true && kind !== 'node_enrollment') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'only enrollment tokens can be single-use');
    const parentTenant = input.parentId === undefined ? undefined : this.store.tokens.tenantOf(input.parentId);
    const tenant = parentTenant ?? input.tenant ?? DEFAULT_TENANT;
    if (input.tenant !== undefined && input.tenant !== tenant) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `a minted token is in its parent's tenant (${tenant}), not ${input.tenant}`);
    if (tenant !== DEFAULT_TENANT) {
      if (this.store.tenants.get(tenant) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no tenant "${tenant}" (tyrum tenant create ${tenant})`, { tenant });
      if (kind !== 'access' || roles.includes('node')) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `nodes belong to the host: a token of tenant "${tenant}" has the role client only`);
    }
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const salt = randomBytes(16);
    const hash = await scrypt(secret, salt, KDF);
    const created = this.now();
    const expiresAt = input.ttlSeconds === undefined ? null : created + input.ttlSeconds * 1000;
    // Checked after the async hash, against a fresh read: a revocation may have landed meanwhile.
    if (input.parentId !== undefined) this.checkParent(input.parentId, scopes, roles, expiresAt, created);
    const record: TokenRecord = {
      id,
      label: input.label ?? '',
      scopes,
      roles,
      kdf: KDF_LABEL,
      salt,
      hash,
      created_at: created,
      created_by: input.createdBy,
      parent_id: input.parentId ?? null,
      expires_at: expiresAt,
      revoked_at: null,
      last_used_at: null,
      kind,
      device_id: input.deviceId ?? null,
      single_use: input.singleUse === true,
      tenant_id: tenant,
    };
    this.store.tx(() => this.store.tokens.insert(record));
    return { token: `tyrum_${id}_${secret}`, record };
  }

  /** A child may not outrank (scopes, roles) or outlive its parent, and a dead parent mints nothing. */
  private checkParent(parentId: string, scopes: readonly string[], roles: readonly string[], expiresAt: number | null, now: number): void {
    const parent = this.store.tokens.get(parentId);
    if (!parent || !this.store.tokens.lineageLive(parentId, now)) {
      throw new TyrumError('TYRUM_ERR_UNAUTHORIZED', `token ${parentId} is revoked or expired and cannot mint tokens`);
    }
    const wider = scopes.filter((s) => !parent.scopes.includes(s));
    if (wider.length > 0) {
      throw new TyrumError('TYRUM_ERR_SCOPE_ESCALATION', `cannot mint a token with scopes the caller does not hold: ${wider.join(', ')}`, { scopes: wider });
    }
    const higher = roles.filter((r) => !parent.roles.includes(r));
    if (higher.length > 0) {
      throw new TyrumError('TYRUM_ERR_ROLE_ESCALATION', `cannot mint a token with roles the caller does not hold: ${higher.join(', ')} (caller: ${parent.roles.join(', ')})`, { roles: higher });
    }
    if (parent.expires_at !== null && (expiresAt === null || expiresAt > parent.expires_at)) {
      const maxTtl = Math.floor((parent.expires_at - now) / 1000);
      const until = new Date(parent.expires_at).toISOString();
      throw new TyrumError(
        'TYRUM_ERR_TOKEN_LIFETIME',
        expiresAt === null
          ? `the caller's token expires at ${until}; a token it mints must expire too (ttl_seconds at most ${maxTtl})`
          : `the caller's token expires at ${until}; a token it mints may not expire later (ttl_seconds at most ${maxTtl})`,
        { expires_at: until, max_ttl_seconds: maxTtl },
      );
    }
  }

  /**
   * Checks a presented token. Returns null for anything that is not a live token: malformed,
   * unknown, wrong secret, revoked or expired (callers must not tell these apart to the peer).
   */
  async authenticate(token: string): Promise<AuthenticatedToken | null> {
    const parsed = parseToken(token);
    if (!parsed) return null;
    let rec = this.store.tokens.get(parsed.id);
    if (!rec) return null;
    const digest = createHmac('sha256', this.cacheKey).update(token).digest('base64url');
    const hit = this.verified.get(digest);
    if (hit === undefined || hit.id !== rec.id || hit.until <= this.now()) {
      this.verified.delete(digest);
      const params = parseKdf(rec.kdf);
      if (!params) return null;
      const hash = await scrypt(parsed.secret, rec.salt, params);
      if (hash.length !== rec.hash.length || !timingSafeEqual(hash, rec.hash)) return null;
      if (this.verified.size >= VERIFIED_CACHE_MAX) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(digest, { id: rec.id, until: this.now() + VERIFIED_CACHE_TTL_MS });
      // Re-read after the async hash: a revocation may have landed meanwhile.
      rec = this.store.tokens.get(parsed.id);
      if (!rec) return null;
    }
    const now = this.now();
    if (!isLive(rec, now)) return null;
    // A minted token lives only while every token up its minting chain does.
    if (rec.parent_id !== null && !this.store.tokens.lineageLive(rec.id, now)) return null;
    if (rec.last_used_at === null || now - rec.last_used_at > LAST_USED_RESOLUTION_MS) this.lastUsed.set(rec.id, now);
    return toAuthenticated(rec, this.store.tokens.tenantOf(rec.id));
  }

  /**
   * Writes the last-use times noted since the previous flush, in one transaction (nested in the
   * caller's, if any). The gateway calls it on an interval and at close; a crash loses at most
   * the uses noted since the last flush, which are informational (`token list`), never an input
   * to an authorization decision.
   */
  flushLastUsed(): void {
    if (this.lastUsed.size === 0) return;
    const noted = [...this.lastUsed];
    this.lastUsed.clear();
    this.store.tx(() => {
      for (const [id, at] of noted) this.store.tokens.touch(id, at);
    });
  }

  /**
   * Revokes a token and, in the same transaction, every token it minted directly or
   * transitively. Returns the record and the ids of the descendants this revoked (for the audit
   * log and for closing their sockets). Throws not_found for an unknown id; revoking twice is
   * invalid_state.
   */
  revoke(id: string, tenant?: string): { record: TokenRecord; descendants: string[] } {
    const rec = this.store.tokens.get(id);
    // Another tenant's token answers exactly as an unknown one.
    if (!rec || (tenant !== undefined && this.store.tokens.tenantOf(id) !== tenant)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no token with id ${id}`);
    if (rec.revoked_at !== null) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `token ${id} is already revoked`);
    const at = this.now();
    const descendants = this.store.tx(() => {
      this.store.tokens.revoke(id, at);
      return this.store.tokens.descendants(id).filter((d) => this.store.tokens.revoke(d, at));
    });
    return { record: { ...rec, revoked_at: at }, descendants };
  }

  /** Every token, or only `tenant`'s. */
  list(tenant?: string): TokenRecord[] {
    return this.store.tokens.list(tenant);
  }

  /** True when at least one token exists (bootstrap creates the first admin token otherwise). */
  any(): boolean {
    return this.store.tokens.list().length > 0;
  }
}

export function isLive(rec: TokenRecord, now: number): boolean {
  return rec.revoked_at === null && (rec.expires_at === null || rec.expires_at > now);
}

function toAuthenticated(rec: TokenRecord, tenant: string): AuthenticatedToken {
  return { id: rec.id, label: rec.label, scopes: rec.scopes.filter(isScope), roles: rec.roles.filter(isRole), expires_at: rec.expires_at, kind: rec.kind, device_id: rec.device_id, single_use: rec.single_use, ...(tenant !== DEFAULT_TENANT ? { tenant_id: tenant } : {}) };
}

/** Public view of a token record (the shape of `TokenInfo` on the wire). */
export function tokenInfo(rec: TokenRecord) {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    token_id: rec.id,
    label: rec.label,
    scopes: rec.scopes.filter(isScope),
    roles: rec.roles.filter(isRole),
    created_at: new Date(rec.created_at).toISOString(),
    expires_at: iso(rec.expires_at),
    revoked_at: iso(rec.revoked_at),
    last_used_at: iso(rec.last_used_at),
    kind: rec.kind,
    device_id: rec.device_id,
  };
}
