/**
 * Secret handles: values encrypted at rest with AES-256-GCM, each bound to the origins it may be
 * sent to (./destination.ts: a bare host means https on port 443 only; `http://` and other ports
 * are named as origins).
 *
 * Every write uses a fresh random 12-byte nonce, and the additional authenticated data is
 * `tyrum-secret:v1:<name>:<version>`: a ciphertext moved to another handle, or an old version
 * written back over a rotated one, fails authentication instead of decrypting to a value the
 * operator did not put there. Plugins never call `reveal`: only the egress handler does, to
 * inject a value into a request bound for one of the handle's destinations.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SECRET_NAME_PATTERN } from '../../schemas/src/manifest.js';
import { TyrumError } from '../errors/index.js';
import type { SecretRecord, Store } from '../store/index.js';
import { SECRET_KEY_BYTES } from './key.js';
import { normalizeDestination, originLabel, parseDestination } from './destination.js';

/** Shortest value accepted: anything shorter cannot be redacted reliably (see `set`). */
export const MIN_SECRET_BYTES = 6;
/** Longest value accepted. */
export const MAX_SECRET_BYTES = 64 * 1024;
/** Most destinations one handle may be bound to (the manifest's limit). */
export const MAX_SECRET_DESTINATIONS = 16;

const NAME_RE = new RegExp(SECRET_NAME_PATTERN);
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** What `list` shows: a handle and its metadata, never its value. Times in ms since the epoch. */
export interface SecretHandle {
  name: string;
  version: number;
  destinations: string[];
  created_at: number;
  rotated_at: number;
}

/** A decrypted value with its handle name (for the redactor; internal to the gateway). */
export interface SecretValue {
  name: string;
  value: Buffer;
  /** The tenant owning the handle; absent: the default tenant. */
  tenant?: string;
}

export interface SecretChange {
  kind: 'set' | 'remove';
  name: string;
  /** The tenant owning the handle; absent: the default tenant. */
  tenant?: string;
  /** The new version after a set; the removed version after a remove. */
  version: number;
}

export interface SecretStoreOptions {
  /** Clock in ms (tests pin it). */
  now?: () => number;
}

/**
 * The additional authenticated data binding a ciphertext to its handle, version and tenant: a
 * handle of a tenant other than the default binds its tenant too (`tyrum-secret:v1:t:<tenant>:…`;
 * tenant ids are lower case, handle names upper case), so a ciphertext moved into another
 * tenant's namespace fails authentication. The default tenant's AAD is as before tenancy.
 */
export function secretAad(name: string, version: number, tenant = 'default'): Buffer {
  return Buffer.from(tenant === 'default' ? `tyrum-secret:v1:${name}:${version}` : `tyrum-secret:v1:t:${tenant}:${name}:${version}`, 'utf8');
}

function parseDestinations(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return []; // a corrupt list binds the secret to nowhere, which is the safe reading
  }
}

function handleOf(r: SecretRecord): SecretHandle {
  return { name: r.name, version: r.version, destinations: parseDestinations(r.destinations), created_at: r.created_at, rotated_at: r.rotated_at };
}

function assertName(name: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret name must match ${SECRET_NAME_PATTERN} (upper case, digits and _), e.g. GITHUB_TOKEN`, { name: String(name).slice(0, 80) });
  }
}

function checkDestinations(name: string, list: readonly string[]): string[] {
  if (!Array.isArray(list) || list.length === 0) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${name} needs at least one destination it may be sent to`, { name });
  }
  const out: string[] = [];
  for (const raw of list) {
    const dest = typeof raw === 'string' ? normalizeDestination(raw) : null;
    if (dest === null) {
      throw new TyrumError(
        'TYRUM_ERR_INVALID_ARGUMENT',
        `secret ${name}: destination ${JSON.stringify(String(raw).slice(0, 100))} is not an exact host (https, port 443) or origin such as https://api.example.com:8443 or http://127.0.0.1:8080 (no paths, user info or wildcards)`,
        { name },
      );
    }
    // `api.example.com` and `https://api.example.com` are the same origin: keep the first.
    const origin = originLabel(parseDestination(dest)!);
    if (!out.some((d) => originLabel(parseDestination(d)!) === origin)) out.push(dest);
  }
  if (out.length > MAX_SECRET_DESTINATIONS) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${name} has ${out.length} destinations; at most ${MAX_SECRET_DESTINATIONS}`, { name });
  }
  return out;
}

function checkValue(name: string, value: Uint8Array): void {
  if (!(value instanceof Uint8Array)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${name}: the value must be bytes`, { name });
  if (value.byteLength < MIN_SECRET_BYTES) {
    throw new TyrumError(
      'TYRUM_ERR_INVALID_ARGUMENT',
      `secret ${name}: the value is ${value.byteLength} bytes; at least ${MIN_SECRET_BYTES} are required because shorter values ` +
        'cannot be redacted reliably (they occur by chance in ordinary logs and outputs, so they would either leak or mangle them)',
      { name, bytes: value.byteLength },
    );
  }
  if (value.byteLength > MAX_SECRET_BYTES) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${name}: the value is ${value.byteLength} bytes; at most ${MAX_SECRET_BYTES}`, { name, bytes: value.byteLength });
  }
}

/** Encrypted secret handles over the store's `secrets` table. */
export class SecretStore {
  readonly #store: Store;
  readonly #key: Buffer;
  readonly #now: () => number;
  readonly #listeners = new Set<(c: SecretChange) => void>();
  #revision = 0;
  #seenDataVersion: number;
  #fingerprint: string;

  constructor(store: Store, key: Uint8Array, options: SecretStoreOptions = {}) {
    if (!(key instanceof Uint8Array) || key.byteLength !== SECRET_KEY_BYTES) {
      throw new TyrumError('TYRUM_ERR_SECRET_KEY', `the secrets key must be exactly ${SECRET_KEY_BYTES} bytes`);
    }
    this.#store = store;
    this.#key = Buffer.from(key); // a private copy: the caller may zero or reuse its buffer
    this.#now = options.now ?? Date.now;
    this.#seenDataVersion = store.dataVersion();
    this.#fingerprint = this.#computeFingerprint();
  }

  /**
   * Create the handle, or rotate it: a new value gets version + 1 and a fresh nonce, keeps its
   * `created_at` and updates `rotated_at`. `destinations` replaces the bound origins; pass
   * `undefined` on a rotation to keep them (a new handle must name at least one).
   */
  set(name: string, value: Uint8Array, destinations: readonly string[] | undefined, options: { localOnly?: boolean; tenant?: string } = {}): SecretHandle {
    const tenant = options.tenant ?? 'default';
    assertName(name);
    checkValue(name, value);
    // A local-only handle (no destinations) is never sent anywhere: the gateway only uses it
    // itself, e.g. to verify a chat platform's webhook signatures.
    if (options.localOnly === true && destinations !== undefined && destinations.length > 0) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${name}: a local-only secret has no destinations`, { name });
    }
    const given = options.localOnly === true ? [] : destinations === undefined ? undefined : checkDestinations(name, destinations);
    const handle = this.#store.tx(() => {
      const prev = this.#store.secrets.get(name, tenant);
      const dests = given ?? (prev ? parseDestinations(prev.destinations) : undefined);
      const keepsLocal = given === undefined && prev !== undefined && dests !== undefined && dests.length === 0;
      if ((dests === undefined || dests.length === 0) && options.localOnly !== true && !keepsLocal) checkDestinations(name, []); // throws: a new handle needs destinations
      const version = (prev?.version ?? 0) + 1;
      const now = this.#now();
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(secretAad(name, version, tenant));
      const ciphertext = Buffer.concat([cipher.update(value), cipher.final()]);
      const rec: SecretRecord = {
        name,
        version,
        nonce,
        ciphertext,
        tag: cipher.getAuthTag(),
        destinations: JSON.stringify(dests),
        created_at: prev?.created_at ?? now,
        rotated_at: now,
      };
      this.#store.secrets.put(rec, tenant);
      return handleOf(rec);
    });
    this.#changed({ kind: 'set', name, version: handle.version, ...(tenant !== 'default' ? { tenant } : {}) });
    return handle;
  }

  /**
   * Decrypt a handle's current value. Internal to the gateway (egress injection, redaction):
   * never return it to a plugin or a client. A wrong key or an altered record throws
   * TYRUM_ERR_SECRET_DECRYPT naming the handle; an unknown handle throws TYRUM_ERR_NOT_FOUND.
   */
  reveal(name: string, tenant = 'default'): Buffer {
    const rec = this.#store.secrets.get(name, tenant);
    if (!rec) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `secret handle ${name} does not exist`, { name });
    return this.#decrypt(rec, tenant);
  }

  /**
   * Every value that decrypts, of every tenant (a tenant's value is named with its tenant), for
   * building a redactor. Records that do not decrypt are skipped: this process cannot leak what
   * it cannot read.
   */
  values(): SecretValue[] {
    const out: SecretValue[] = [];
    for (const rec of this.#store.secrets.listAll()) {
      try {
        out.push({ name: rec.name, value: this.#decrypt(rec, rec.tenant_id), ...(rec.tenant_id !== 'default' ? { tenant: rec.tenant_id } : {}) });
      } catch {
        continue;
      }
    }
    return out;
  }

  /** A tenant's handles (the default tenant's unless named) with metadata, never values. */
  list(tenant = 'default'): SecretHandle[] {
    return this.#store.secrets.list(tenant).map(handleOf);
  }

  /** One handle's metadata, or undefined. */
  get(name: string, tenant = 'default'): SecretHandle | undefined {
    const rec = this.#store.secrets.get(name, tenant);
    return rec ? handleOf(rec) : undefined;
  }

  has(name: string, tenant = 'default'): boolean {
    return this.#store.secrets.get(name, tenant) !== undefined;
  }

  /** The destinations (bare hosts or origins) the handle's value may be sent to; empty when the handle does not exist. */
  destinations(name: string, tenant = 'default'): string[] {
    const rec = this.#store.secrets.get(name, tenant);
    return rec ? parseDestinations(rec.destinations) : [];
  }

  /** Delete a handle of a tenant (the default unless named); false when it did not exist. */
  remove(name: string, tenant = 'default'): boolean {
    const rec = this.#store.secrets.get(name, tenant);
    const removed = this.#store.secrets.remove(name, tenant);
    if (removed) this.#changed({ kind: 'remove', name, version: rec?.version ?? 0, ...(tenant !== 'default' ? { tenant } : {}) });
    return removed;
  }

  /**
   * Called after every set or remove made through this instance (the change is committed even
   * if a listener throws; the first listener error is rethrown after all have run). Returns a
   * function that unsubscribes. Changes made by another process are seen through `revision`.
   */
  onChange(listener: (c: SecretChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * A number that increases whenever the set of secret values may have changed, including
   * writes by another process on the same database (e.g. `tyrum secret set` while the gateway
   * runs). Cheap enough to call before every redaction: one `PRAGMA data_version` unless the
   * database changed.
   */
  revision(): number {
    const dv = this.#store.dataVersion();
    if (dv !== this.#seenDataVersion) {
      this.#seenDataVersion = dv;
      const fp = this.#computeFingerprint();
      if (fp !== this.#fingerprint) {
        this.#fingerprint = fp;
        this.#revision += 1;
      }
    }
    return this.#revision;
  }

  #changed(c: SecretChange): void {
    this.#fingerprint = this.#computeFingerprint();
    this.#revision += 1;
    let first: unknown;
    let failed = false;
    for (const l of this.#listeners) {
      try {
        l(c);
      } catch (e) {
        if (!failed) first = e;
        failed = true;
      }
    }
    if (failed) throw first;
  }

  /** Tenants, names and nonces identify the exact set of stored values (every write draws a new nonce). */
  #computeFingerprint(): string {
    return this.#store.secrets
      .listAll()
      .map((r) => `${r.tenant_id === 'default' ? '' : `${r.tenant_id}/`}${r.name}:${Buffer.from(r.nonce).toString('hex')}`)
      .join(',');
  }

  #decrypt(rec: SecretRecord, tenant = 'default'): Buffer {
    try {
      if (rec.nonce.length !== NONCE_BYTES || rec.tag.length !== TAG_BYTES) throw new Error('malformed record');
      const decipher = createDecipheriv('aes-256-gcm', this.#key, rec.nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(secretAad(rec.name, rec.version, tenant));
      decipher.setAuthTag(rec.tag);
      return Buffer.concat([decipher.update(rec.ciphertext), decipher.final()]);
    } catch (e) {
      throw new TyrumError(
        'TYRUM_ERR_SECRET_DECRYPT',
        `secret ${rec.name} (version ${rec.version}) cannot be decrypted: the secrets key ($TYRUM_SECRETS_KEY or secrets.key) differs from the one it was written with, or the record was altered`,
        { name: rec.name, version: rec.version },
        { cause: e },
      );
    }
  }
}
