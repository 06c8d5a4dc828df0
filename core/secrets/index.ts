/**
 * Secrets: the encryption key, encrypted handles bound to destination origins, and redaction of
 * known values. Plugins only ever name a handle; the value leaves the gateway solely inside an
 * egress request to one of the handle's destinations (core/egress).
 */
export { loadSecretKey, secretKeyPath, SECRET_KEY_BYTES, SECRET_KEY_ENV } from './key.js';
export {
  SecretStore,
  secretAad,
  MIN_SECRET_BYTES,
  MAX_SECRET_BYTES,
  MAX_SECRET_DESTINATIONS,
  type SecretHandle,
  type SecretValue,
  type SecretChange,
  type SecretStoreOptions,
} from './store.js';
export { Redactor, redactionLabel, encodedForms, secretRef, parseSecretRef, type RedactionEntry } from './redact.js';
export { parseDestination, normalizeDestination, destinationAllows, destinationHost, originLabel, canonicalHost, urlOrigin, type SecretOrigin } from './destination.js';
