/**
 * `tyrum audit verify|list|archive`: on the gateway home directly, whether or not the gateway is
 * running; `verify --archive FILE` needs no home at all (core/audit/archive.ts).
 */
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/home.js';
import { openHomeCore } from '../home.js';
import { verifyAudit, listAudit, writeAuditArchive, verifyAuditArchive, type VerifyAuditResult } from '../audit/index.js';
import { cliActor } from './home.js';
import { parse, subcommandError } from './args.js';
import type { Io } from './io.js';

export async function audit(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'verify': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, archive: { type: 'string' }, 'key-id': { type: 'string' } });
      if (values.help) return usage(io, 'tyrum audit verify [--json]\n       tyrum audit verify --archive FILE [--key-id ID] [--json]   (offline: no home needed)');
      if (values.archive !== undefined) {
        const r = await verifyAuditArchive(values.archive, values['key-id'] !== undefined ? { keyId: values['key-id'] } : {});
        if (values.json) io.out(JSON.stringify(r));
        else if (r.ok) io.out(`audit archive ok: ${r.entries} entries, signed by key ${r.key_id}, checkpoint at ${r.checkpoint?.seq ?? 0}${values['key-id'] === undefined ? ' (pin the key with --key-id: tyrum doctor prints your gateway\'s)' : ''}`);
        else io.err(`audit archive BROKEN: ${r.reason ?? 'unknown cause'}`);
        return r.ok ? 0 : 1;
      }
      if (values['key-id'] !== undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--key-id applies to --archive FILE only');
      const svc = openHomeCore(resolveHome(values.home), {}, { tamperedAudit: 'inspect' });
      try {
        const r = verifyAudit({ store: svc.store, verifier: svc.key, checkpointPath: svc.paths.auditCheckpoint });
        if (values.json) io.out(JSON.stringify(r));
        else report(io, r, 'audit chain');
        return r.ok ? 0 : 1;
      } finally {
        await svc.close();
      }
    }
    case 'archive': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, out: { type: 'string' } });
      if (values.help) return usage(io, 'tyrum audit archive --out FILE [--json]   the whole log with its signed checkpoint and public key, verified after writing');
      if (values.out === undefined || values.out === '') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'missing --out FILE: usage: tyrum audit archive --out FILE');
      const svc = openHomeCore(resolveHome(values.home));
      let written;
      try {
        written = writeAuditArchive({ store: svc.store, audit: svc.audit, key: svc.key, checkpointPath: svc.paths.auditCheckpoint, out: values.out, actor: cliActor() });
      } finally {
        await svc.close();
      }
      // Read back: an archive that does not verify is reported at once, not when it is needed.
      const check = await verifyAuditArchive(written.path, { keyId: written.key_id });
      if (values.json) io.out(JSON.stringify({ ...written, verified: check.ok, ...(check.reason !== undefined ? { reason: check.reason } : {}) }));
      else if (check.ok) io.out(`archived ${written.entries} audit entries to ${written.path} (${written.bytes} bytes, sha256 ${written.sha256}, key ${written.key_id}); verify with: tyrum audit verify --archive ${written.path} --key-id ${written.key_id}`);
      else io.err(`archive written to ${written.path} but it does not verify: ${check.reason ?? 'unknown cause'} (run tyrum audit verify)`);
      return check.ok ? 0 : 1;
    }
    case 'list': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' }, after: { type: 'string' }, limit: { type: 'string' }, type: { type: 'string' } });
      if (values.help) return usage(io, 'tyrum audit list [--after SEQ] [--limit N] [--type T] [--json]');
      const int = (v: string | undefined, name: string) => {
        if (v === undefined) return undefined;
        if (!/^\d+$/.test(v)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--${name} must be a non-negative integer`);
        return Number(v);
      };
      const svc = openHomeCore(resolveHome(values.home), {}, { tamperedAudit: 'inspect' });
      try {
        const after = int(values.after, 'after');
        const limit = int(values.limit, 'limit');
        const entries = listAudit(svc.store, { ...(after !== undefined ? { after_seq: after } : {}), ...(limit !== undefined ? { limit } : {}), ...(values.type !== undefined ? { type: values.type } : {}) });
        for (const e of entries) io.out(values.json ? JSON.stringify(e) : `${e.seq}\t${e.ts}\t${e.type}\t${JSON.stringify(e.actor)}\t${JSON.stringify(e.data)}`);
        return 0;
      } finally {
        await svc.close();
      }
    }
    case '--help':
      return usage(io, 'tyrum audit verify|list|archive ... (tyrum audit SUBCOMMAND --help for each)');
    default:
      throw subcommandError('audit', sub);
  }
}

function report(io: Io, r: VerifyAuditResult, what: string): void {
  if (r.ok) io.out(`${what} ok: ${r.entries} entries, head ${r.head_hash.slice(0, 16)}…, checkpoint at ${r.checkpoint?.seq ?? 0}`);
  else if (r.tampered && r.first_bad === undefined) io.err(`audit log TAMPERED (accepted): ${r.reason}`);
  else io.err(`${what} BROKEN: ${r.reason ?? 'unknown cause'}`);
}

function usage(io: Io, text: string): number {
  io.out(`usage: ${text}`);
  return 0;
}
