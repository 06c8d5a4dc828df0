/**
 * `npm run bench -- artifacts` (issue 15): artifact write and read throughput (MB/s) through the
 * artifact service, side by side with raw file I/O of the same bytes in the same directory, in
 * the same run:
 *
 * - write: `ArtifactService.put` (sha256 while streaming to a temp file, fsync, rename, directory
 *   fsync, then the metadata row, event and audit entry committed) vs a raw write of the same bytes
 *   to a new file + fsync;
 * - read: `ArtifactService.open` streamed to the end vs `createReadStream` of the raw file.
 *
 * Each artifact is new content (no dedupe). Reads come from the page cache in both columns.
 *
 *   BENCH_ARTIFACT_MIB=8      size of one artifact
 *   BENCH_ARTIFACT_COUNT=16   artifacts written and read per column
 */
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomFillSync } from 'node:crypto';
import { openHomeCore } from '../core/home.js';
import { openArtifactService } from '../core/artifacts/index.js';
import { envNumber, loadAverage, reportTarget, table, diskLine } from './util.js';

const MIB = envNumber('BENCH_ARTIFACT_MIB', 8, 1);
const COUNT = envNumber('BENCH_ARTIFACT_COUNT', 16, 1);

const mbs = (bytes: number, ms: number) => (bytes / 1e6) / (ms / 1000);
const fmt = (v: number) => `${v.toFixed(0)} MB/s`;

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) void _;
}

export async function artifactsBench(): Promise<void> {
  console.log('\n## Artifacts: write and read MB/s through the artifact service vs raw file I/O of the same bytes\n');
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-artifacts-'));
  const loadStart = loadAverage();
  const core = openHomeCore(home, {}, {});
  try {
    console.log(`- ${diskLine(home)}`);
    const size = MIB * 1024 * 1024;
    const svc = openArtifactService({ store: core.store, events: core.approvals.events, audit: core.audit, home, limits: { maxArtifactBytes: size, maxArtifactsTotalBytes: Number.MAX_SAFE_INTEGER } });
    const blobs = Array.from({ length: COUNT }, () => randomFillSync(Buffer.alloc(size)));
    const raw = join(home, 'raw');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(raw, { mode: 0o700 });
    const total = size * COUNT;

    // Interleaved per blob, so a change of load hits both columns alike.
    let rawWriteMs = 0;
    let artWriteMs = 0;
    const ids: string[] = [];
    for (const [i, b] of blobs.entries()) {
      let t0 = performance.now();
      const fh = await open(join(raw, `f${i}`), 'wx', 0o600);
      await fh.write(b);
      await fh.sync();
      await fh.close();
      rawWriteMs += performance.now() - t0;
      t0 = performance.now();
      ids.push((await svc.put({ content: b, media_type: 'application/octet-stream' }, 'bench')).artifact_id);
      artWriteMs += performance.now() - t0;
    }
    let rawReadMs = 0;
    let artReadMs = 0;
    for (const [i, id] of ids.entries()) {
      let t0 = performance.now();
      await drain(createReadStream(join(raw, `f${i}`)));
      rawReadMs += performance.now() - t0;
      t0 = performance.now();
      await drain((await svc.open(id)).stream);
      artReadMs += performance.now() - t0;
    }
    const w = { raw: mbs(total, rawWriteMs), art: mbs(total, artWriteMs) };
    const r = { raw: mbs(total, rawReadMs), art: mbs(total, artReadMs) };
    table(
      ['measure', 'raw file I/O (baseline)', 'artifact service', 'ratio (artifact / raw)'],
      [
        [`write, ${COUNT} × ${MIB} MiB (raw: write + fsync; artifact: sha256 + temp + fsync + rename + dir fsync + commit)`, fmt(w.raw), fmt(w.art), `${(w.art / w.raw).toFixed(2)}×`],
        [`read, ${COUNT} × ${MIB} MiB (streamed to the end)`, fmt(r.raw), fmt(r.art), `${(r.art / r.raw).toFixed(2)}×`],
      ],
    );
    console.log(`\nload average (1, 5, 15 min): ${loadStart} at the start of this section, ${loadAverage()} at its end.`);
    reportTarget('artifacts.write', { figure: fmt(w.art), baseline: `raw write + fsync: ${fmt(w.raw)}`, ratio: `${(w.art / w.raw).toFixed(2)}×`, met: null });
    reportTarget('artifacts.read', { figure: fmt(r.art), baseline: `raw read: ${fmt(r.raw)}`, ratio: `${(r.art / r.raw).toFixed(2)}×`, met: null });
  } finally {
    await core.close();
    rmSync(home, { recursive: true, force: true });
  }
}
