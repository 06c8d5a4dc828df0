/**
 * The browser's device keys and stored credentials, in IndexedDB.
 *
 * A device key is an Ed25519 key pair made by WebCrypto with `extractable: false`: the page can
 * sign with it but no script (ours or an injected one) can read the private key's bytes, and
 * IndexedDB stores the CryptoKey object itself (structured clone), not its bytes. The operator
 * client and the embedded browser node each have their own key (`client` and `node`), so they are
 * two devices to the gateway.
 */
import { base32LowerNoPad, type DeviceIdentity } from '../../../sdk/client/transcript.js';

const DB_NAME = 'tyrum-ui';
const DB_VERSION = 1;
const KEYS = 'keys';
const SECRETS = 'secrets';

export interface DeviceKey extends DeviceIdentity {
  privateKey: CryptoKey;
}

interface StoredKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(KEYS)) db.createObjectStore(KEYS);
      if (!db.objectStoreNames.contains(SECRETS)) db.createObjectStore(SECRETS);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB is not available'));
  });
}

async function tx<T>(store: string, mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const t = db.transaction(store, mode);
      const req = fn(t.objectStore(store));
      t.oncomplete = () => resolve(req.result as T);
      t.onerror = () => reject(t.error ?? new Error('IndexedDB transaction failed'));
      t.onabort = () => reject(t.error ?? new Error('IndexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

export function b64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** True when this browser can make non-extractable Ed25519 keys (needs a secure context). */
export function webCryptoEd25519Available(): boolean {
  return typeof crypto !== 'undefined' && crypto.subtle !== undefined && typeof indexedDB !== 'undefined';
}

/** The device key named `name`, created (and stored) on first use. */
export async function loadOrCreateDeviceKey(name: 'client' | 'node'): Promise<DeviceKey> {
  let stored = await tx<StoredKey | undefined>(KEYS, 'readonly', (s) => s.get(name));
  if (!stored) {
    const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    stored = { privateKey: pair.privateKey, publicKey: pair.publicKey };
    await tx(KEYS, 'readwrite', (s) => s.put(stored, name));
  }
  const der = new Uint8Array(await crypto.subtle.exportKey('spki', stored.publicKey));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', der));
  return { privateKey: stored.privateKey, pubkey: b64url(der), device_id: 'dev_' + base32LowerNoPad(digest) };
}

/** Forgets a device key (a new device on next use; its pairing is then for the old device). */
export async function deleteDeviceKey(name: 'client' | 'node'): Promise<void> {
  await tx(KEYS, 'readwrite', (s) => s.delete(name));
}

/** Signs `text` (UTF-8) with the device key; base64url without padding. */
export async function signText(key: DeviceKey, text: string): Promise<string> {
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, key.privateKey, new TextEncoder().encode(text));
  return b64url(new Uint8Array(sig));
}

export type SecretName = 'operator-token' | 'node-token' | 'node-bootstrap-token';

export async function getSecret(name: SecretName): Promise<string | undefined> {
  const v = await tx<unknown>(SECRETS, 'readonly', (s) => s.get(name));
  return typeof v === 'string' ? v : undefined;
}

export async function setSecret(name: SecretName, value: string): Promise<void> {
  await tx(SECRETS, 'readwrite', (s) => s.put(value, name));
}

export async function deleteSecret(name: SecretName): Promise<void> {
  await tx(SECRETS, 'readwrite', (s) => s.delete(name));
}
