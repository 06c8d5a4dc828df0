/**
 * Signed checkpoints: the anchor that lives outside the database.
 *
 * A hash chain alone proves only internal consistency: whoever can write the database can
 * drop its tail or rewrite every hash from an edited entry onwards and still present a valid
 * chain. The checkpoint records (seq, head hash) signed with the gateway's Ed25519 key in a
 * separate file, so truncation below it or a re-hash at or before it no longer verifies
 * without the private key.
 *
 * A checkpoint is only ever written over one its writer read and found extended by the chain
 * (see AuditLog), and it carries forward, signed, every tampering an operator accepted.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { canonicalJson } from '../util/canonical-json.js';
import { b64url, fromB64url } from '../util/encoding.js';

/** Signs checkpoints; the gateway's Ed25519 identity key implements it. */
export interface CheckpointSigner {
  keyId: string;
  sign(data: Buffer): Buffer;
}

/** Checks checkpoint signatures; the public half of the signer. */
export interface CheckpointVerifier {
  verify(data: Buffer, sig: Buffer): boolean;
}

/**
 * An operator's acceptance of a damaged log: the facts found when the chain no longer extended
 * the signed checkpoint. Once written, every later checkpoint carries it (signed), so the
 * damage stays on record however often the gateway restarts.
 */
export interface TamperRecord {
  /** When the operator accepted the log as found (started with --accept-tampered-audit). */
  accepted_at: string;
  /** What was wrong, in words. */
  reason: string;
  /** The last authentic checkpoint before the damage; null when there was none to trust. */
  previous: { seq: number; head_hash: string; ts: string } | null;
  /** The head of the log as it was found (seq 0 and the genesis hash for an empty log). */
  found: { seq: number; head_hash: string };
}

/**
 * The signed part of a checkpoint. `count` equals `seq` (seq is contiguous from 1). Version 2
 * is version 1 plus `tampered`, so a build that does not know the field refuses the checkpoint
 * rather than silently dropping the record.
 */
export interface CheckpointBody {
  version: 1 | 2;
  seq: number;
  head_hash: string;
  count: number;
  ts: string;
  key_id?: string;
  /** Every accepted tampering, oldest first; present (non-empty) exactly when version is 2. */
  tampered?: TamperRecord[];
}

/** A checkpoint as stored: the body plus a base64url signature over canonicalJson(body). */
export interface Checkpoint extends CheckpointBody {
  signature: string;
}

/** Outcome of reading a checkpoint file; only `ok` carries a checkpoint worth trusting. */
export type CheckpointLoad =
  | { status: 'ok'; checkpoint: CheckpointBody }
  | { status: 'missing' }
  | { status: 'invalid'; reason: string }
  | { status: 'forged' };

/** Sign `body` with `signer`. An empty `tampered` list is left out (a version 1 checkpoint). */
export function signCheckpoint(body: Omit<CheckpointBody, 'version' | 'key_id'>, signer: CheckpointSigner): Checkpoint {
  const { tampered, ...rest } = body;
  const signed: CheckpointBody =
    tampered !== undefined && tampered.length > 0 ? { version: 2, ...rest, key_id: signer.keyId, tampered } : { version: 1, ...rest, key_id: signer.keyId };
  return { ...signed, signature: b64url(signer.sign(Buffer.from(canonicalJson(signed), 'utf8'))) };
}

/**
 * Durably replace the checkpoint at `path` with `cp`, provided the file still holds exactly
 * `basedOn` (its text when the caller read it, null when it was absent). Returns false, writing
 * nothing, when another writer replaced it in between: the caller re-reads and decides again,
 * so a checkpoint is never published over one it did not check (never a lower seq, never
 * dropping a tamper record another writer added).
 *
 * The file is written to a temp file beside `path` and fsynced first, outside any lock; only the
 * compare-and-rename runs inside `exclusive`, a cross-process mutex, so the mutex is held for
 * microseconds, not for an fsync. Rename is atomic and the directory is fsynced afterwards, so a
 * crash leaves the old or the new checkpoint, never a torn one.
 */
export function writeCheckpoint(path: string, cp: Checkpoint, basedOn: string | null, exclusive: (fn: () => void) => void): boolean {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let published = false;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, checkpointText(cp));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    exclusive(() => {
      if (readText(path) !== basedOn) return;
      renameSync(tmp, path);
      published = true;
    });
  } finally {
    if (!published) rmSync(tmp, { force: true });
  }
  if (published) {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
  return published;
}

/** The exact text `writeCheckpoint` stores for `cp`. */
export function checkpointText(cp: Checkpoint): string {
  return JSON.stringify(cp, null, 2) + '\n';
}

/** The file's text, or null when it does not exist. Other read errors throw. */
function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Read and authenticate the checkpoint at `path`. */
export function loadCheckpoint(path: string, verifier: CheckpointVerifier): CheckpointLoad {
  return readCheckpoint(path, verifier).load;
}

/**
 * Read and authenticate the checkpoint at `path`, keeping the text it was read from (for
 * `writeCheckpoint`). `trusted` is a text the caller authenticated before (or wrote itself):
 * when the file still holds exactly that text, its body is returned without verifying again.
 */
export function readCheckpoint(
  path: string,
  verifier: CheckpointVerifier,
  trusted?: { text: string; body: CheckpointBody },
): { text: string | null; load: CheckpointLoad } {
  let text: string | null;
  try {
    text = readText(path);
  } catch (e) {
    return { text: null, load: { status: 'invalid', reason: `cannot read checkpoint file: ${(e as Error).message}` } };
  }
  if (text === null) return { text, load: { status: 'missing' } };
  if (trusted !== undefined && text === trusted.text) return { text, load: { status: 'ok', checkpoint: trusted.body } };
  return { text, load: parseCheckpoint(text, verifier) };
}

/** Authenticate a checkpoint given as text (a file's, or one carried in an audit archive). */
export function parseCheckpoint(text: string, verifier: CheckpointVerifier): CheckpointLoad {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { status: 'invalid', reason: 'checkpoint file is not valid JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { status: 'invalid', reason: 'checkpoint file is not a JSON object' };
  }
  const { signature, ...body } = parsed as Record<string, unknown>;
  const sig = typeof signature === 'string' ? fromB64url(signature) : null;
  if (sig === null) return { status: 'invalid', reason: 'checkpoint signature is missing or not base64url' };
  // Everything but the signature is signed, so an added or altered field fails here too.
  let good: boolean;
  try {
    good = verifier.verify(Buffer.from(canonicalJson(body), 'utf8'), sig);
  } catch {
    good = false;
  }
  if (!good) return { status: 'forged' };
  if (!isCheckpointBody(body)) return { status: 'invalid', reason: 'checkpoint has an unexpected shape' };
  return { status: 'ok', checkpoint: body };
}

function isCheckpointBody(b: Record<string, unknown>): b is CheckpointBody & Record<string, unknown> {
  const tamperedOk =
    b.version === 1
      ? b.tampered === undefined
      : b.version === 2 && Array.isArray(b.tampered) && b.tampered.length > 0 && (b.tampered as unknown[]).every(isTamperRecord);
  return (
    tamperedOk &&
    Number.isSafeInteger(b.seq) &&
    (b.seq as number) >= 0 &&
    typeof b.head_hash === 'string' &&
    HEX64.test(b.head_hash) &&
    Number.isSafeInteger(b.count) &&
    typeof b.ts === 'string' &&
    (b.key_id === undefined || typeof b.key_id === 'string')
  );
}

function isTamperRecord(r: unknown): r is TamperRecord {
  if (typeof r !== 'object' || r === null) return false;
  const { accepted_at, reason, previous, found } = r as Record<string, unknown>;
  const isHead = (h: unknown, ts: boolean): boolean => {
    if (typeof h !== 'object' || h === null) return false;
    const o = h as Record<string, unknown>;
    return Number.isSafeInteger(o.seq) && (o.seq as number) >= 0 && typeof o.head_hash === 'string' && HEX64.test(o.head_hash) && (!ts || typeof o.ts === 'string');
  };
  return typeof accepted_at === 'string' && typeof reason === 'string' && (previous === null || isHead(previous, true)) && isHead(found, false);
}
