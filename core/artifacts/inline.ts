/**
 * Artifacts carried inline in JSON: how WASM tools (a `$artifacts` key of their output object) and
 * nodes (`artifacts` in their task.execute result) hand the gateway evidence blobs. Each entry is
 * `{ media_type, name?, content_base64 }` or `{ media_type, name?, text }` (UTF-8). The host takes
 * them out of the output before the output is checked against its schema, so a tool's declared
 * output never has to mention them. Media type, size and quota are checked when they are stored.
 */
import { TyrumError } from '../errors/index.js';
import type { ArtifactOutput } from '../execution/types.js';

/** The output key a WASM tool puts its artifacts under (docs/plugin-authors.md). */
export const TOOL_ARTIFACTS_KEY = '$artifacts';
/** At most this many artifacts per call. */
export const MAX_INLINE_ARTIFACTS = 16;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function invalid(source: string, message: string, details: Record<string, unknown> = {}): TyrumError {
  return new TyrumError('TYRUM_ERR_ARTIFACT_INVALID', `${source}: ${message}; nothing was stored`, { source, ...details });
}

/** The entries of an inline artifact list, decoded; TYRUM_ERR_ARTIFACT_INVALID naming the first bad one. */
export function parseInlineArtifacts(value: unknown, source: string): ArtifactOutput[] {
  if (!Array.isArray(value)) throw invalid(source, 'artifacts must be an array');
  if (value.length > MAX_INLINE_ARTIFACTS) throw invalid(source, `at most ${MAX_INLINE_ARTIFACTS} artifacts per call (got ${value.length})`, { count: value.length });
  return value.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalid(source, `artifact ${i} is not an object`, { index: i });
    const e = entry as Record<string, unknown>;
    for (const k of Object.keys(e)) if (!['media_type', 'name', 'content_base64', 'text'].includes(k)) throw invalid(source, `artifact ${i} has an unknown key ${JSON.stringify(k)}`, { index: i });
    if (typeof e.media_type !== 'string') throw invalid(source, `artifact ${i} needs a media_type string`, { index: i });
    if (e.name !== undefined && e.name !== null && typeof e.name !== 'string') throw invalid(source, `artifact ${i}: name must be a string`, { index: i });
    const hasB64 = e.content_base64 !== undefined;
    const hasText = e.text !== undefined;
    if (hasB64 === hasText) throw invalid(source, `artifact ${i} needs exactly one of content_base64 and text`, { index: i });
    let content: Buffer;
    if (hasB64) {
      if (typeof e.content_base64 !== 'string' || !BASE64.test(e.content_base64)) throw invalid(source, `artifact ${i}: content_base64 is not standard base64`, { index: i });
      content = Buffer.from(e.content_base64, 'base64');
    } else {
      if (typeof e.text !== 'string') throw invalid(source, `artifact ${i}: text must be a string`, { index: i });
      content = Buffer.from(e.text, 'utf8');
    }
    return { media_type: e.media_type, name: (e.name as string | null | undefined) ?? null, content };
  });
}

/**
 * A tool's output without its `$artifacts` key, and the artifacts it carried (none when the output
 * is not an object or has no such key).
 */
export function extractToolArtifacts(output: unknown, source: string): { output: unknown; artifacts: ArtifactOutput[] } {
  if (typeof output !== 'object' || output === null || Array.isArray(output) || !Object.hasOwn(output, TOOL_ARTIFACTS_KEY)) return { output, artifacts: [] };
  const { [TOOL_ARTIFACTS_KEY]: raw, ...rest } = output as Record<string, unknown>;
  return { output: rest, artifacts: parseInlineArtifacts(raw, source) };
}
