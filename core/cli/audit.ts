/** `tyrum audit verify|list`: on the gateway home directly, whether or not the gateway is running. */
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/home.js';
import { openHomeCore } from '../home.js';
import { verifyAudit, listAudit } from '../audit/index.js';
import { parse, subcommandError } from './args.js';
import type { Io } from './io.js';

export async function audit(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'verify': {
      const { values } = parse(rest, { home: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return usage(io, 'tyrum audit verify [--json]');
      const svc = openHomeCore(resolveHome(values.home), {}, { tamperedAudit: 'inspect' });
      try {
        const r = verifyAudit({ store: svc.store, verifier: svc.key, checkpointPath: svc.paths.auditCheckpoint });
        if (values.json) io.out(JSON.stringify(r));
        else if (r.ok) io.out(`audit chain ok: ${r.entries} entries, head ${r.head_hash.slice(0, 16)}…, checkpoint at ${r.checkpoint?.seq ?? 0}`);
        else if (r.tampered && r.first_bad === undefined) io.err(`audit log TAMPERED (accepted): ${r.reason}`);
        else io.err(`audit chain BROKEN: ${r.reason ?? 'unknown cause'}`);
        return r.ok ? 0 : 1;
      } finally {
        await svc.close();
      }
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
      return usage(io, 'tyrum audit verify|list ... (tyrum audit SUBCOMMAND --help for each)');
    default:
      throw subcommandError('audit', sub);
  }
}

function usage(io: Io, text: string): number {
  io.out(`usage: ${text}`);
  return 0;
}
