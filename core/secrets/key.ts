/**
 * The key that encrypts secrets at rest (AES-256-GCM): 32 bytes from $TYRUM_SECRETS_KEY, or from
 * `<home>/secrets.key`, created on first use.
 *
 * The key file is kept apart from the database on purpose: a copied `tyrum.db` (a backup, a bug
 * report) holds only ciphertext. An operator who keeps the key elsewhere (a secrets manager, a
 * systemd credential) sets the environment variable instead and no file is written.
 */
import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TyrumError } from '../errors/index.js';

/** Bytes of an AES-256 key. */
export const SECRET_KEY_BYTES = 32;
/** The environment variable that, when set, supplies the key instead of the key file. */
export const SECRET_KEY_ENV = 'TYRUM_SECRETS_KEY';

/** Where the key file lives in a gateway home. */
export function secretKeyPath(home: string): string {
  return join(home, 'secrets.key');
}

/** Decode standard base64 or base64url (padding optional); null when the text is neither. */
function decodeBase64Loose(text: string): Buffer | null {
  const s = text.trim();
  if (s.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) return null;
  if (/[+/]/.test(s) && /[-_]/.test(s)) return null; // mixed alphabets: a typo, not a key
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function decodeKey(text: string, source: string): Buffer {
  const key = decodeBase64Loose(text);
  if (key === null) {
    throw new TyrumError('TYRUM_ERR_SECRET_KEY', `${source} is not base64: it must hold exactly ${SECRET_KEY_BYTES} random bytes in base64 or base64url`, { source });
  }
  if (key.length !== SECRET_KEY_BYTES) {
    throw new TyrumError(
      'TYRUM_ERR_SECRET_KEY',
      `${source} decodes to ${key.length} bytes; it must be exactly ${SECRET_KEY_BYTES} (generate one with: openssl rand -base64 32)`,
      { source, bytes: key.length },
    );
  }
  return key;
}

/**
 * The 32-byte secrets key: from `env.TYRUM_SECRETS_KEY` when set (base64 or base64url of exactly
 * 32 bytes), else from `<home>/secrets.key`, which is created (0600, exclusively) on first use.
 * An existing key file that group or others can read is refused: fix it with chmod rather than
 * have the gateway silently keep using a key that may have been copied.
 */
export function loadSecretKey(home: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env[SECRET_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return decodeKey(fromEnv, `$${SECRET_KEY_ENV}`);
  const path = secretKeyPath(home);
  const created = createKeyFile(path);
  if (created !== null) return created;
  return readKeyFile(path);
}

/** Create the key file with a fresh key; null when it already exists (read it instead). */
function createKeyFile(path: string): Buffer | null {
  let fd: number;
  try {
    // 'wx' = O_CREAT|O_EXCL: never truncates a key someone else just wrote, and refuses to
    // follow a planted symlink.
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw new TyrumError('TYRUM_ERR_SECRET_KEY', `cannot create the secrets key file ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  const key = randomBytes(SECRET_KEY_BYTES);
  try {
    writeSync(fd, `${key.toString('base64')}\n`);
    fsyncSync(fd); // losing the key loses every secret: make it durable before any is encrypted with it
  } finally {
    closeSync(fd);
  }
  return key;
}

function readKeyFile(path: string): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_SECRET_KEY', `cannot read the secrets key file ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  if (!st.isFile()) throw new TyrumError('TYRUM_ERR_SECRET_KEY', `${path} is not a regular file`, { path });
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new TyrumError(
      'TYRUM_ERR_SECRET_KEY',
      `refusing to use ${path}: it is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
      { path, mode: st.mode & 0o777 },
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_SECRET_KEY', `cannot read the secrets key file ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  return decodeKey(text, path);
}
