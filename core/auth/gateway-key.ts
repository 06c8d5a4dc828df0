/**
 * The gateway's own Ed25519 key: signs audit checkpoints. Created on first start as a PKCS8
 * PEM file with mode 0600; an existing key file readable by group or others is refused.
 */
import { generateKeyPairSync, createPrivateKey, createPublicKey, sign, verify, createHash, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { TyrumError } from '../errors/index.js';

export interface GatewayKey {
  /** Short fingerprint of the public key (sha256 of DER SPKI, first 16 hex). */
  readonly keyId: string;
  readonly publicKey: KeyObject;
  sign(data: Buffer): Buffer;
  verify(data: Buffer, sig: Buffer): boolean;
}

/** The key id of a public key's SPKI DER: the first 16 hex digits of its sha256. */
function keyIdOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/** The gateway's public key as SPKI DER, base64url (what an audit archive carries). */
export function publicKeyText(key: GatewayKey): string {
  return key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64url');
}

/** A checkpoint verifier from a public key given as SPKI DER base64url; throws when it is not an Ed25519 key. */
export function publicKeyVerifier(spkiB64url: string): { keyId: string; verify(data: Buffer, sig: Buffer): boolean } {
  const der = Buffer.from(spkiB64url, 'base64url');
  const pub = createPublicKey({ key: der, format: 'der', type: 'spki' });
  if (pub.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 public key');
  return {
    keyId: keyIdOf(pub.export({ format: 'der', type: 'spki' })),
    verify: (data, sig) => {
      try {
        return verify(null, data, pub, sig);
      } catch {
        return false;
      }
    },
  };
}

function fromPrivate(priv: KeyObject): GatewayKey {
  const pub = createPublicKey(priv);
  const der = pub.export({ format: 'der', type: 'spki' });
  return {
    keyId: keyIdOf(der),
    publicKey: pub,
    sign: (data) => sign(null, data, priv),
    verify: (data, sig) => {
      try {
        return verify(null, data, pub, sig);
      } catch {
        return false;
      }
    },
  };
}

/** Loads the key at `path`, creating it (0600) when absent. */
export function loadOrCreateGatewayKey(path: string): GatewayKey {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(path, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
    return fromPrivate(privateKey);
  }
  return loadGatewayKey(path);
}

/** Loads an existing key; refuses a missing, malformed or too-permissive file. */
export function loadGatewayKey(path: string): GatewayKey {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new TyrumError('TYRUM_ERR_HOME', `gateway key ${path} is missing`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new TyrumError('TYRUM_ERR_HOME', `gateway key ${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
  }
  try {
    const priv = createPrivateKey(readFileSync(path));
    if (priv.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 key');
    return fromPrivate(priv);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_HOME', `gateway key ${path} is unreadable: ${(e as Error).message}`, undefined, { cause: e });
  }
}
