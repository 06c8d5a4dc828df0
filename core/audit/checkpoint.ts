/**
 * Signed checkpoints: the anchor that lives outside the database.
 *
 * A hash chain alone proves only internal consistency: whoever can write the database can
 * drop its tail or rewrite every hash from an edited entry onwards and still present a valid
 * chain. The checkpoint records (seq, head hash) signed with the gateway's Ed25519 key in a
 * separate file, so truncation below it or a re-hash at or before it no longer verifies
 * without the private key.
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

/** The signed part of a checkpoint. `count` equals `seq` (seq is contiguous from 1). */
export interface CheckpointBody {
  version: 1;
  seq: number;
  head_hash: string;
  count: number;
  ts: string;
  key_id?: string;
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

/** Sign `body` with `signer`. */
export function signCheckpoint(body: Omit<CheckpointBody, 'version' | 'key_id'>, signer: CheckpointSigner): Checkpoint {
  const signed: CheckpointBody = { version: 1, ...body, key_id: signer.keyId };
  return { ...signed, signature: b64url(signer.sign(Buffer.from(canonicalJson(signed), 'utf8'))) };
}

/**
 * Durably replace the checkpoint at `path` with `cp`, unless the file already holds a seq at
 * least as high (never regress).
 *
 * The file is written to a temp file beside `path` and fsynced first, outside any lock; only the
 * compare-and-rename runs inside `exclusive`, a cross-process mutex, so two writers can never
 * rename an older checkpoint over a newer one, yet the mutex is held for microseconds, not for
 * an fsync. Rename is atomic and the directory is fsynced afterwards, so a crash leaves the old
 * or the new checkpoint, never a torn one.
 */
export function writeCheckpoint(path: string, cp: Checkpoint, exclusive: (fn: () => void) => void): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let published = false;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(cp, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    exclusive(() => {
      const existing = readCheckpointSeq(path);
      if (existing !== null && existing >= cp.seq) return;
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
}

/** The `seq` in the file at `path`, or null when unreadable; unverified, used only to never regress. */
function readCheckpointSeq(path: string): number | null {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    const seq = typeof v === 'object' && v !== null ? (v as { seq?: unknown }).seq : undefined;
    return Number.isSafeInteger(seq) ? (seq as number) : null;
  } catch {
    return null;
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Read and authenticate the checkpoint at `path`. */
export function loadCheckpoint(path: string, verifier: CheckpointVerifier): CheckpointLoad {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'invalid', reason: `cannot read checkpoint file: ${(e as Error).message}` };
  }
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
  return (
    b.version === 1 &&
    Number.isSafeInteger(b.seq) &&
    (b.seq as number) >= 0 &&
    typeof b.head_hash === 'string' &&
    HEX64.test(b.head_hash) &&
    Number.isSafeInteger(b.count) &&
    typeof b.ts === 'string' &&
    (b.key_id === undefined || typeof b.key_id === 'string')
  );
}
