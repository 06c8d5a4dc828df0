/**
 * Audit archives: the whole log in one file that verifies offline, without the home.
 *
 * The audit log is never removed by retention; an archive is how it leaves the machine. The file
 * is JSON Lines: a header line, then every entry from 1 through the signed checkpoint's seq, one
 * canonical JSON entry per line (as `exportAudit` writes them). The header carries what a
 * verifier needs: the signed checkpoint exactly as the gateway signed it, and the gateway's public
 * key (SPKI DER, base64url) with its key id.
 *
 *   {"format":"tyrum.audit-archive","version":1,"created_at":"…","key_id":"…","public_key":"…","entries":N,"checkpoint":{…,"signature":"…"}}
 *
 * Verification (`verifyAuditArchive`) runs the same walk as `tyrum audit verify` (ChainWalk in
 * verify.ts) over the file's lines, against the checkpoint in the header, and in addition refuses
 * entries past the checkpoint (an archive ends at it, so anything after was appended unsigned).
 * The public key comes from the file itself: the archive proves it is intact as signed by *that*
 * key; pin the key (`--key-id`, the id `tyrum doctor` prints) to prove it is your gateway's.
 */
import { closeSync, createReadStream, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { AuditRow, Store } from '../store/index.js';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { publicKeyText, publicKeyVerifier, type GatewayKey } from '../auth/gateway-key.js';
import { parseCheckpoint, readCheckpoint, type CheckpointLoad } from './checkpoint.js';
import { entryFromRow, type AuditActor } from './entry.js';
import type { AuditLog } from './log.js';
import { ChainWalk, type VerifyAuditResult } from './verify.js';

export const ARCHIVE_FORMAT = 'tyrum.audit-archive';

export interface WriteArchiveOptions {
  store: Store;
  audit: AuditLog;
  key: GatewayKey;
  checkpointPath: string;
  /** The file to write; refused when it exists. */
  out: string;
  actor: AuditActor;
  now?: () => Date;
}

export interface ArchiveWritten {
  path: string;
  entries: number;
  key_id: string;
  bytes: number;
  sha256: string;
}

/**
 * Writes the archive: first an `audit.archived` entry (committed with a fresh signed checkpoint
 * over it, so the archive covers the log up to this moment), then the file, through a temp file
 * beside it, fsynced and renamed into place (0600: the log names actors and resources).
 */
export function writeAuditArchive(o: WriteArchiveOptions): ArchiveWritten {
  if (existsSync(o.out)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${o.out} exists; choose another --out (an archive is never overwritten)`);
  o.audit.appendSync('audit.archived', o.actor, { file: basename(o.out) });
  const { text, load } = readCheckpoint(o.checkpointPath, o.key);
  if (text === null || load.status !== 'ok') {
    throw new TyrumError('TYRUM_ERR_AUDIT_CHECKPOINT', `the signed checkpoint at ${o.checkpointPath} cannot be read back (${load.status}); run tyrum audit verify`);
  }
  const checkpoint = JSON.parse(text) as Record<string, unknown>;
  const through = load.checkpoint.seq;
  const header = {
    format: ARCHIVE_FORMAT,
    version: 1,
    created_at: (o.now ?? (() => new Date()))().toISOString(),
    key_id: o.key.keyId,
    public_key: publicKeyText(o.key),
    entries: through,
    checkpoint,
  };
  const tmp = join(dirname(o.out), `.${basename(o.out)}.${randomBytes(6).toString('hex')}.tmp`);
  const hash = createHash('sha256');
  let bytes = 0;
  let written = 0;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    const write = (line: string) => {
      const buf = Buffer.from(line + '\n', 'utf8');
      writeSync(fd, buf);
      hash.update(buf);
      bytes += buf.length;
    };
    write(JSON.stringify(header));
    for (const row of o.store.audit.iterate()) {
      if (row.seq > through) break;
      write(canonicalJson(entryFromRow(row)));
      written += 1;
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, o.out);
  return { path: o.out, entries: written, key_id: o.key.keyId, bytes, sha256: hash.digest('hex') };
}

export interface ArchiveVerifyResult extends VerifyAuditResult {
  /** The key id of the public key in the archive (null when the header could not be read). */
  key_id: string | null;
  created_at: string | null;
}

/** An archive line as a stored row (actor and data back to the canonical text that was hashed); null when it is not an entry. */
function rowOf(line: string): AuditRow | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const e = v as Record<string, unknown>;
  const isObj = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!Number.isSafeInteger(e.seq) || typeof e.ts !== 'string' || typeof e.type !== 'string' || !isObj(e.actor) || !isObj(e.data) || typeof e.prev_hash !== 'string' || typeof e.hash !== 'string') {
    return 'not an audit entry (seq, ts, type, actor, data, prev_hash, hash)';
  }
  return { seq: e.seq as number, ts: e.ts, type: e.type, actor: canonicalJson(e.actor), data: canonicalJson(e.data), prev_hash: e.prev_hash, hash: e.hash };
}

/**
 * Verifies an archive file offline: its header, the checkpoint's signature under the archive's
 * public key (and that key's id against `keyId` when given), and the chain of its entries, which
 * must end exactly at the checkpoint. Never throws for a damaged file: the result says what is
 * wrong. Throws TYRUM_ERR_NOT_FOUND when the file cannot be opened.
 */
export async function verifyAuditArchive(path: string, opts: { keyId?: string } = {}): Promise<ArchiveVerifyResult> {
  if (!existsSync(path)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no archive at ${path}`);
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  const broken = (reason: string, key_id: string | null = null, created_at: string | null = null): ArchiveVerifyResult => ({
    ok: false,
    entries: 0,
    head_hash: '',
    checkpoint: null,
    reason,
    key_id,
    created_at,
  });
  let walk: ChainWalk | null = null;
  let keyId: string | null = null;
  let createdAt: string | null = null;
  try {
    for await (const line of lines) {
      if (walk === null) {
        let h: Record<string, unknown>;
        try {
          h = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return broken('the header line is not JSON: not an audit archive, or its header was damaged');
        }
        if (typeof h !== 'object' || h === null || h.format !== ARCHIVE_FORMAT || h.version !== 1) return broken(`the header is not a ${ARCHIVE_FORMAT} version 1 header`);
        createdAt = typeof h.created_at === 'string' ? h.created_at : null;
        let verifier;
        try {
          verifier = publicKeyVerifier(typeof h.public_key === 'string' ? h.public_key : '');
        } catch {
          return broken("the header's public_key is not an Ed25519 public key", null, createdAt);
        }
        keyId = verifier.keyId;
        if (h.key_id !== keyId) return broken(`the header's key_id ${String(h.key_id)} is not the id of its public key (${keyId}): the header was altered`, keyId, createdAt);
        if (opts.keyId !== undefined && opts.keyId !== keyId) {
          return broken(`the archive is signed by key ${keyId}, not by the expected key ${opts.keyId}: it is not that gateway's log, or it was re-signed`, keyId, createdAt);
        }
        let cp: CheckpointLoad = parseCheckpoint(JSON.stringify(h.checkpoint ?? null), verifier);
        if (cp.status === 'ok' && cp.checkpoint.key_id !== undefined && cp.checkpoint.key_id !== keyId) {
          cp = { status: 'invalid', reason: `the checkpoint names key ${cp.checkpoint.key_id}, the archive carries key ${keyId}` };
        }
        walk = new ChainWalk(cp);
        continue;
      }
      if (line === '') continue;
      const row = rowOf(line);
      if (typeof row === 'string') walk.unreadable(row);
      else walk.push(row);
    }
  } finally {
    lines.close();
  }
  if (walk === null) return broken('the file is empty');
  return { ...walk.result(`the archive's header (${path})`, { exact: true }), key_id: keyId, created_at: createdAt };
}
