/**
 * The publisher's side of plugin signatures (`tyrum plugin keygen`, `tyrum plugin sign`): an
 * Ed25519 key and the detached signature of an archive. The format, and its verification on
 * install, are the kernel's (core/registry/signature.ts).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as edSign, type KeyObject } from 'node:crypto';
import { TyrumError } from '../../core/errors/index.js';
import { encodePublicKey, signatureMessage, type PluginSignature } from '../../core/registry/signature.js';
import { sha256Hex } from '../../manifests/index.js';

/** A new publisher key: the private key as PKCS#8 PEM and the public key as base64url SPKI. */
export function generatePublisherKey(): { privateKeyPem: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), publicKey: encodePublicKey(publicKey) };
}

/** Load a publisher's private key from PEM; refuses anything but an Ed25519 private key. */
export function loadPublisherKey(pem: string | Buffer, label: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${label}: not a private key in PEM (${(e as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${label}: an ${key.asymmetricKeyType ?? 'unknown'} key; publisher keys are Ed25519 (tyrum plugin keygen)`);
  }
  return key;
}

/** Sign an archive's bytes as `publisher` (the manifest's). */
export function signArchive(archive: Uint8Array, publisher: string, privateKey: KeyObject): PluginSignature {
  const unsigned = { publisher, sha256: sha256Hex(archive), public_key: encodePublicKey(createPublicKey(privateKey)) };
  const signature = edSign(null, signatureMessage(unsigned), privateKey).toString('base64url');
  return { version: 1, ...unsigned, signature };
}
