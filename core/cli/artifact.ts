/**
 * `tyrum artifact list --run RUN` and `tyrum artifact get ID --out FILE`: evidence blobs, through a
 * running gateway. Metadata over the protocol (artifact.list / artifact.get); the bytes from
 * `GET /artifacts/<id>` with the same token, streamed to FILE.part, checked against the digest the
 * id names, then renamed to FILE.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TyrumError } from '../errors/index.js';
import { parse, need, subcommandError } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum artifact list --run RUN_ID [--json]         the artifacts attached to a run (evidence of its steps)
  tyrum artifact get ARTIFACT_ID --out FILE [--json] download one (checked against its sha256) to FILE`;

interface ArtifactInfo {
  artifact_id: string;
  size: number;
  media_type: string;
  name: string | null;
  created_at: string;
  download_path: string;
}

/** The HTTP origin of the gateway a WebSocket URL names (ws → http, wss → https). */
export function httpOrigin(wsUrl: string): string {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  return u.origin;
}

export async function artifactCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, { ...CLIENT_FLAGS, run: { type: 'string' }, out: { type: 'string' } }, 1);
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  if (sub === undefined) throw subcommandError('artifact', sub);
  if (sub === 'list') need(values.run, '--run RUN_ID', 'tyrum artifact list --run RUN_ID');
  if (sub === 'get') {
    need(positionals[0], 'ARTIFACT_ID', 'tyrum artifact get ARTIFACT_ID --out FILE');
    need(values.out, '--out FILE', 'tyrum artifact get ARTIFACT_ID --out FILE');
  }
  return withClient(values, async (client, _hello, url) => {
    const req = <R extends Record<string, unknown>>(type: string, payload: Record<string, unknown>) => client.request<R>(type, payload).catch(remoteError);
    switch (sub) {
      case 'list': {
        const r = await req<{ artifacts: Array<{ artifact: ArtifactInfo; attachment: { step_idx: number | null; attempt: number | null; name: string | null; media_type: string } }> }>('artifact.list', { run_id: values.run! });
        if (values.json) io.out(JSON.stringify(r));
        else for (const x of r.artifacts) io.out([x.artifact.artifact_id, x.attachment.step_idx === null ? 'run' : `step ${x.attachment.step_idx}${x.attachment.attempt === null ? '' : ` attempt ${x.attachment.attempt}`}`, x.attachment.media_type, String(x.artifact.size), x.attachment.name ?? '-'].join('\t'));
        return 0;
      }
      case 'get': {
        const id = positionals[0]!;
        const out = values.out!;
        const { artifact } = await req<{ artifact: ArtifactInfo }>('artifact.get', { artifact_id: id });
        const token = values.token ?? process.env.TYRUM_TOKEN ?? '';
        const res = await fetch(`${httpOrigin(url)}${artifact.download_path}`, { headers: { authorization: `Bearer ${token}` } }).catch((e: unknown) => {
          throw new TyrumError('TYRUM_ERR_CONNECTION', `cannot download ${id}: ${(e as Error).message}`);
        });
        if (res.status !== 200 || res.body === null) {
          const code = res.status === 401 ? 'TYRUM_ERR_UNAUTHORIZED' : res.status === 403 ? 'TYRUM_ERR_FORBIDDEN' : res.status === 404 ? 'TYRUM_ERR_NOT_FOUND' : 'TYRUM_ERR_ARTIFACT_IO';
          throw new TyrumError(code, `downloading ${id} failed: HTTP ${res.status}`, { status: res.status });
        }
        const hash = createHash('sha256');
        let size = 0;
        const part = `${out}.part`;
        try {
          await pipeline(
            Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]),
            new Transform({
              transform(chunk: Buffer, _enc, cb) {
                hash.update(chunk);
                size += chunk.length;
                cb(null, chunk);
              },
            }),
            createWriteStream(part, { mode: 0o600 }),
          );
          const digest = hash.digest('hex');
          if (`sha256:${digest}` !== id) throw new TyrumError('TYRUM_ERR_ARTIFACT_IO', `the downloaded bytes do not match ${id} (got sha256:${digest}); ${out} was not written`, { digest });
          renameSync(part, out);
        } catch (e) {
          rmSync(part, { force: true });
          throw e;
        }
        if (values.json) io.out(JSON.stringify({ artifact, out, size }));
        else io.out(`wrote ${size} bytes (${artifact.media_type}) to ${out}; sha256 verified`);
        return 0;
      }
      default:
        throw subcommandError('artifact', sub);
    }
  });
}
