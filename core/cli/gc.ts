/**
 * `tyrum gc [--dry-run] [--json]`: one retention sweep on the home (docs/retention.md), beside a
 * running gateway or not: each batch is a short transaction (WAL; the gateway's writers take
 * turns with it). With --dry-run it only counts what a sweep would remove now.
 */
import { parse } from './args.js';
import { cliActor, withHomeCore } from './home.js';
import type { Io } from './io.js';
import type { SweepReport } from '../retention/index.js';

const USAGE = `usage: tyrum gc [--dry-run] [--json] [--home DIR]
  removes what the retention policy (config.json "retention") says has expired, in bounded batches;
  --dry-run counts what would go and changes nothing. The audit log is never removed
  (tyrum audit archive writes it to a file).`;

export async function gc(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, json: { type: 'boolean' }, 'dry-run': { type: 'boolean' } });
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const { createSweeper } = await import('../retention/index.js');
  const { openArtifactService } = await import('../artifacts/index.js');
  return withHomeCore(values.home, async (svc) => {
    const artifacts = openArtifactService({ store: svc.store, events: svc.approvals.events, audit: svc.audit, home: svc.paths.home, limits: svc.config.limits });
    const sweeper = createSweeper({ store: svc.store, audit: svc.audit, retention: svc.config.retention, deleteArtifactBlob: (id) => artifacts.deleteBlob(id) });
    const report = await sweeper.sweep({ dryRun: values['dry-run'] === true, actor: cliActor() });
    if (values.json) io.out(JSON.stringify(report));
    else for (const line of describe(report)) io.out(line);
    return 0;
  });
}

/** The report as text: one line per category, then the total. */
export function describe(r: SweepReport): string[] {
  const width = Math.max(...r.categories.map((c) => c.name.length), 5);
  const lines = [r.dry_run ? 'would remove (dry run: nothing changed):' : 'removed:'];
  for (const c of r.categories) {
    const name = c.name.padEnd(width);
    if (c.days === null) {
      lines.push(`  ${name}  kept (no retention set)`);
      continue;
    }
    const detail = Object.entries(c.detail)
      .filter(([k]) => k !== c.name || Object.keys(c.detail).length > 1)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    lines.push(`  ${name}  ${String(c.rows).padStart(8)} rows  ${bytes(c.bytes).padStart(10)}  older than ${c.days} d (before ${c.cutoff})${detail ? `: ${detail}` : ''}`);
  }
  lines.push(`total: ${r.rows} rows, ${bytes(r.bytes)}${r.interrupted ? ' (interrupted: run tyrum gc again)' : ''}`);
  return lines;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return `${(n / (1024 * 1024 * 1024)).toFixed(1)} GiB`;
}
